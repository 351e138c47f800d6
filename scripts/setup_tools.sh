#!/usr/bin/env bash
# Install the independent DICOM tools the integration tests check our objects with (Debian
# packages): plastimatch (reads an RTSTRUCT back onto the CT, and writes a real CT as DICOM),
# dicom3tools (dciodvfy: IOD compliance), dcmtk (dcmdump, storescu: the scanner) and Orthanc (the
# PACS/TPS stand-in the DICOM node sends to), openssl (the node's TLS tests make their CA), docker-compose to check docker-compose.yml, chromium and
# chromium-driver (the dashboard's browser test drives them through Selenium), and
# invesalius-examples (one real head CT, unlabelled, that plastimatch exports). Not needed to run the product.
# Usage: scripts/setup_tools.sh   (as root; does nothing when every tool is there)
set -euo pipefail
declare -A PACKAGE=([plastimatch]=plastimatch [dciodvfy]=dicom3tools [dcmdump]=dcmtk [Orthanc]=orthanc [docker-compose]=docker-compose [openssl]=openssl [chromium]=chromium [chromedriver]=chromium-driver)
# data files, not programs: the path tests/integration/test_real_ct_export.py reads
CRANIUM=/usr/share/doc/invesalius-examples/examples/Cranium.inv3
declare -A DATA=([$CRANIUM]=invesalius-examples)
missing=()
for tool in "${!PACKAGE[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("${PACKAGE[$tool]}")
done
for file in "${!DATA[@]}"; do
    [ -f "$file" ] || missing+=("${DATA[$file]}")
done
[ ${#missing[@]} -eq 0 ] && { echo "[tools] plastimatch, dciodvfy, dcmtk, Orthanc, openssl, docker-compose, chromium, chromedriver and invesalius-examples are installed"; exit 0; }
if [ "$(id -u)" != 0 ]; then
    echo "[tools] missing: ${missing[*]}; install them as root: apt-get install ${missing[*]}" >&2
    exit 1
fi
echo "[tools] installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
# slim Debian images tell dpkg to drop /usr/share/doc (path-exclude), where the example CT lives:
# then take the file out of the package itself
for file in "${!DATA[@]}"; do
    [ -f "$file" ] && continue
    deb_dir=$(mktemp -d) && chmod 755 "$deb_dir"  # apt downloads as the _apt user
    (cd "$deb_dir" && apt-get download -qq "${DATA[$file]}")
    dpkg-deb --fsys-tarfile "$deb_dir"/*.deb | tar -x -C / ".$file"
    rm -rf "$deb_dir"
    [ -f "$file" ] || { echo "[tools] ${DATA[$file]} holds no $file" >&2; exit 1; }
done
