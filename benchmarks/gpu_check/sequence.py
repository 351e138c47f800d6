"""The order of the stages: what runs in the background meanwhile, what a failed stage
skips, and the exit code."""

from __future__ import annotations

from .constants import EXIT_FAILED, EXIT_NO_GPU, EXIT_OK, GPU_PRECISIONS, NO_GPU, ROOT, SMALL_SEED
from .processes import run_job
from .report import Report, StageFailed
from .stages import (
    Context,
    check_exit,
    ct_size,
    finish_phantoms,
    score_against_truth,
    segment,
    stage_agreement,
    stage_environment,
    stage_nccl,
    stage_pretrain,
    stage_train,
    start_phantoms,
)


def run_checks(ctx: Context, report: Report, quick: bool) -> int:
    """All stages in order; returns the exit code."""
    with report.stage("environment") as rec:
        stage_environment(ctx, rec)
    if not report.ok("environment"):
        env_error = report.data["stages"]["environment"].get("error", "")
        return EXIT_NO_GPU if env_error.startswith(NO_GPU) else EXIT_FAILED

    test_dir = ROOT / "test"
    same_settings = ["--time-budget", "0"]  # richest settings on both: only the arithmetic differs
    with report.stage("cuda_test") as rec:  # --precision auto: float16 autocast on CUDA
        ctx.outputs["cuda_test"] = segment(ctx, rec, "cuda_test", test_dir, "cuda", same_settings)
    for precision in GPU_PRECISIONS:  # the other --precision modes, each timed alone on the GPU
        with report.stage(f"cuda_test_{precision}") as rec:
            extra = [*same_settings, "--precision", precision]
            ctx.outputs[f"cuda_test_{precision}"] = segment(ctx, rec, f"cuda_test_{precision}", test_dir, "cuda", extra)

    # phantoms in the background from here on: the timed GPU inference above and below runs alone
    full_job = (
        None
        if quick
        else start_phantoms(
            ctx,
            "phantom_full",
            ctx.work / "full",
            ["--case-seeds", str(ctx.seed), "--layout", "gc", "--size", "full", "--workers", "1"],
        )
    )
    small_job = start_phantoms(
        ctx,
        "phantoms_small",
        ctx.work / "raw",
        ["--cases", "2", "--seed", str(SMALL_SEED), "--layout", "raw", "--size", "small", "--workers", "2"],
    )

    with report.stage("cpu_test") as rec:  # the reference: float32 whatever the CPU has
        ctx.outputs["cpu_test"] = segment(
            ctx, rec, "cpu_test", test_dir, "cpu", [*same_settings, "--precision", "fp32"]
        )

    if report.ok("cuda_test") and report.ok("cpu_test"):
        stages = report.data["stages"]
        with report.stage("amp_agreement") as rec:
            stage_agreement(
                ctx,
                rec,
                ctx.outputs["cuda_test"],
                ctx.outputs["cpu_test"],
                (stages["cuda_test"]["settings"], stages["cpu_test"]["settings"]),
            )
    else:
        report.skip("amp_agreement", "needs both cuda_test and cpu_test")
    for precision in GPU_PRECISIONS:
        if report.ok(f"cuda_test_{precision}") and report.ok("cpu_test"):
            stages = report.data["stages"]
            with report.stage(f"{precision}_agreement") as rec:
                stage_agreement(
                    ctx,
                    rec,
                    ctx.outputs[f"cuda_test_{precision}"],
                    ctx.outputs["cpu_test"],
                    (stages[f"cuda_test_{precision}"]["settings"], stages["cpu_test"]["settings"]),
                    what=f"CUDA {precision}",
                )
        else:
            report.skip(f"{precision}_agreement", f"needs both cuda_test_{precision} and cpu_test")

    with report.stage("phantoms_small") as rec:
        finish_phantoms(rec, small_job)
    if report.ok("phantoms_small"):
        with report.stage("train_plan") as rec:
            cmd = [
                ctx.python,
                "-m",
                "training.plan",
                "--data",
                str(ctx.work / "raw"),
                "--work",
                str(ctx.work / "train"),
                "--preset",
                "tiny",
                "--spacing",
                "4",
                "4",
                "5",
                "--folds",
                "2",
            ]
            result = run_job("train_plan", cmd, ctx.logs / "train_plan.log", ctx.timeout_s)
            rec.update(result.figures())
            check_exit(result, "training.plan")
    else:
        report.skip("train_plan", "needs phantoms_small")
    if report.ok("train_plan"):
        with report.stage("train_amp") as rec:
            stage_train(ctx, rec, "train_amp", 0, ctx.train_epochs, torchrun=False)
    else:
        report.skip("train_amp", "needs train_plan")

    if full_job is None:
        report.skip("phantom_full", "--quick")
        report.skip("cuda_full", "--quick")
    else:
        with report.stage("phantom_full") as rec:
            finish_phantoms(rec, full_job)
        if report.ok("phantom_full"):
            with report.stage("cuda_full") as rec:
                rec["ct_size"] = ct_size(ctx.work / "full/input")
                out = segment(ctx, rec, "cuda_full", ctx.work / "full/input", "cuda", [])
                rec["mean_dice_vs_truth"] = score_against_truth(out, ctx.work / "full/ground_truth")
                rec["min_mean_dice"] = ctx.min_phantom_dice
                if rec["mean_dice_vs_truth"] is None or rec["mean_dice_vs_truth"] < ctx.min_phantom_dice:
                    raise StageFailed(
                        f"mean Dice against the phantom's truth {rec['mean_dice_vs_truth']} "
                        f"< {ctx.min_phantom_dice}: the GPU output is not a segmentation"
                    )
        else:
            report.skip("cuda_full", "needs phantom_full")

    if report.ok("train_plan"):
        with report.stage("train_torchrun") as rec:
            stage_train(ctx, rec, "train_torchrun", 1, 1, torchrun=True)
            rec["note"] = (
                "one process: training.train opens no process group (WORLD_SIZE 1), so its log "
                "need not mention NCCL; nccl_probe checks NCCL itself"
            )
    else:
        report.skip("train_torchrun", "needs train_plan")
    if report.ok("train_plan"):
        with report.stage("pretrain_amp") as rec:
            stage_pretrain(ctx, rec)
    else:
        report.skip("pretrain_amp", "needs train_plan")
    with report.stage("nccl_probe") as rec:
        stage_nccl(ctx, rec)
    return EXIT_OK if not report.data["failures"] else EXIT_FAILED
