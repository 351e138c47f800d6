#!/usr/bin/env bash
# Install the independent DICOM tools the integration tests check our objects with (Debian
# packages): plastimatch (reads an RTSTRUCT back onto the CT), dicom3tools (dciodvfy: IOD
# compliance), dcmtk (dcmdump, storescu: the scanner) and Orthanc (the PACS/TPS stand-in the
# DICOM node sends to), and docker-compose to check docker-compose.yml. Not needed to run the product.
# Usage: scripts/setup_tools.sh   (as root; does nothing when every tool is there)
set -euo pipefail
declare -A PACKAGE=([plastimatch]=plastimatch [dciodvfy]=dicom3tools [dcmdump]=dcmtk [Orthanc]=orthanc [docker-compose]=docker-compose)
missing=()
for tool in "${!PACKAGE[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("${PACKAGE[$tool]}")
done
[ ${#missing[@]} -eq 0 ] && { echo "[tools] plastimatch, dciodvfy, dcmtk, Orthanc and docker-compose are installed"; exit 0; }
if [ "$(id -u)" != 0 ]; then
    echo "[tools] missing: ${missing[*]}; install them as root: apt-get install ${missing[*]}" >&2
    exit 1
fi
echo "[tools] installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
