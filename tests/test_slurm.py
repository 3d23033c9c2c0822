"""utils/slurm.pl against a real (throw-away, single-node) Slurm cluster: same results, logs and
failure reports as run.pl, one job array per call, no hanging on jobs that cannot start.

The cluster comes from tests/slurm_cluster.py; if it cannot start these tests fail with the
daemons' logs (they never skip). A few tests need no cluster: they put a fake sbatch in the config.
"""

from __future__ import annotations

import re
import subprocess
import time

import kaldiio
import numpy as np
import pytest

from conftest import REPO_ROOT, make_data_dir, recipe_env
from slurm_cluster import slurm_cluster  # noqa: F401  (the fixture)

SLURM_PL = REPO_ROOT / "utils" / "slurm.pl"
RUN_PL = REPO_ROOT / "utils" / "run.pl"


def run(cmd, env, cwd=None, timeout=120, check=False):
    proc = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd or REPO_ROOT, text=True,
                          capture_output=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def queue_is_empty(cluster) -> bool:
    out = run(["squeue", "-h", "-o", "%i %T"], cluster.env, check=True).stdout
    return out.strip() == ""


@pytest.fixture
def job_conf(slurm_cluster, tmp_path):  # noqa: F811
    return slurm_cluster.job_config(tmp_path / "slurm_jobs.conf",
                                    extra="option begin=* --begin $0\n")


# (a) ------------------------------------------------------------------------------------------

def test_make_feats_on_slurm_equals_local(slurm_cluster, job_conf, tmp_path):  # noqa: F811
    data = make_data_dir(tmp_path, speakers=("spka", "spkb"), utts_per_speaker=2)
    outs = {}
    for name, cmd in (("local", "run.pl"), ("slurm", f"slurm.pl --config {job_conf}")):
        outs[name] = tmp_path / "dump" / name
        run(["utils/make_feats.sh", "--cmd", cmd, "--nj", "2", data, outs[name]],
            slurm_cluster.env, check=True, timeout=180)
    for n in (1, 2):
        log = (outs["slurm"] / "log" / f"compute_feats.{n}.log").read_text()
        assert "# Running on " in log and re.search(r"# Ended \(code 0\) at .+\n$", log), log
    local = kaldiio.load_scp(str(outs["local"] / "feats.scp"))
    slurm = kaldiio.load_scp(str(outs["slurm"] / "feats.scp"))
    assert sorted(local) == sorted(slurm) and len(local) == 4
    for utt in local:
        a, b = local[utt], slurm[utt]
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes(), f"{utt}: features differ between run.pl and slurm.pl"
    assert ((outs["local"] / "utt2num_frames").read_text()
            == (outs["slurm"] / "utt2num_frames").read_text())


# (b) ------------------------------------------------------------------------------------------

def test_failed_array_task_names_its_log(slurm_cluster, job_conf, tmp_path):  # noqa: F811
    log = tmp_path / "log" / "x.JOB.log"  # log dir does not exist yet: slurm.pl makes it
    proc = run([SLURM_PL, "--config", job_conf, "JOB=1:3", log, "bash", "-c", "[ JOB -ne 2 ]"],
               slurm_cluster.env)
    assert proc.returncode == 1, proc.stderr
    assert (f"slurm.pl: 1 / 3 failed, log is in {tmp_path}/log/x.*.log "
            f"(failed: job 2; see {tmp_path}/log/x.2.log)") in proc.stderr
    assert (tmp_path / "log" / "x.2.log").read_text().splitlines()[-1].startswith(
        "# Ended (code 1) at ")
    for n in (1, 3):
        assert "# Ended (code 0) at " in (tmp_path / "log" / f"x.{n}.log").read_text()

    # Single-job form, failing, and --pick failed re-running only job 2 (which now succeeds).
    proc = run([SLURM_PL, "--config", job_conf, tmp_path / "one.log", "exit 3"], slurm_cluster.env)
    assert proc.returncode == 1
    assert f"slurm.pl: 1 / 1 failed, log is in {tmp_path / 'one.log'}" in proc.stderr
    stamp = (tmp_path / "log" / "x.1.log").stat().st_mtime_ns
    proc = run([SLURM_PL, "--config", job_conf, "--pick", "failed", "JOB=1:3", log,
                "bash", "-c", "[ JOB -ne 4 ]"], slurm_cluster.env, check=True)
    assert "running 1 of 3 jobs (2)" in proc.stderr
    assert (tmp_path / "log" / "x.1.log").stat().st_mtime_ns == stamp
    assert "# Ended (code 0) at " in (tmp_path / "log" / "x.2.log").read_text()


def test_killed_task_without_status_fails(slurm_cluster, job_conf, tmp_path):  # noqa: F811
    # A task that dies without writing its status (like an OOM kill) must count as failed even
    # though Slurm forgets it; the job script's parent is killed here, taking the status with it.
    proc = run([SLURM_PL, "--config", job_conf, "JOB=1:2", tmp_path / "k.JOB.log",
                "[ JOB = 2 ] && kill -9 $PPID; exit 0"], slurm_cluster.env)
    assert proc.returncode == 1
    assert "failed: job 2; see " in proc.stderr
    assert "ended without a status" in proc.stderr


# (c) ------------------------------------------------------------------------------------------

def _max_overlap(spans):
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    cur = best = 0
    for _, delta in events:
        cur += delta
        best = max(best, cur)
    return best


def test_max_jobs_run_is_honoured(slurm_cluster, job_conf, tmp_path):  # noqa: F811
    job = f"date +%s%N > {tmp_path}/t.JOB.start; sleep 0.5; date +%s%N > {tmp_path}/t.JOB.end"
    run([SLURM_PL, "--config", job_conf, "--max-jobs-run", "1", "JOB=1:3",
         tmp_path / "log" / "t.JOB.log", job], slurm_cluster.env, check=True)
    spans = [(int((tmp_path / f"t.{n}.start").read_text()), int((tmp_path / f"t.{n}.end").read_text()))
             for n in (1, 2, 3)]
    assert _max_overlap(spans) == 1
    # ... and it was one job array: every task carries the same Slurm job id.
    ids = {re.search(r"as Slurm job (\d+)_(\d+)", (tmp_path / "log" / f"t.{n}.log").read_text()).group(1)
           for n in (1, 2, 3)}
    assert len(ids) == 1


# (d) ------------------------------------------------------------------------------------------

def test_logs_framed_like_run_pl_and_environment_reaches_jobs(slurm_cluster, job_conf, tmp_path):  # noqa: F811
    env = dict(slurm_cluster.env, VOICESWAP_TEST_VAR="it's here")
    args = ["JOB=1:2", None, "echo", "job JOB", "|", "tr", "a-z", "A-Z", ";",
            "echo", "lc=$LC_ALL", "var=$VOICESWAP_TEST_VAR", "path=$PATH", ";",
            "echo", "to-err", ">&2"]
    logs = {}
    for name, tool in (("run", [RUN_PL]), ("slurm", [SLURM_PL, "--config", job_conf])):
        args[1] = tmp_path / name / "x.JOB.log"
        run([*tool, *args], env, check=True)
        logs[name] = [(tmp_path / name / f"x.{n}.log").read_text().splitlines() for n in (1, 2)]
    for n in (0, 1):
        r, s = logs["run"][n], logs["slurm"][n]
        assert s[0] == r[0] == (f"# echo 'job {n + 1}' | tr a-z A-Z ; echo lc=$LC_ALL "
                                "var=$VOICESWAP_TEST_VAR path=$PATH ; echo to-err >&2")
        assert s[1].startswith("# Started at ") and r[1].startswith("# Started at ")
        assert re.fullmatch(r"# Running on \S+ as Slurm job \d+_\d", s[2])
        assert s[3] == "#"
        # Same output, in the same order, with the same environment as run.pl's jobs.
        assert s[4:-2] == r[3:-2]
        assert f"JOB {n + 1}" in s and "to-err" in s
        assert f"lc=C var=it's here path={env['PATH']}" in s
        assert f"{REPO_ROOT}/.venv/bin" in env["PATH"].split(":")
        assert re.fullmatch(r"# Accounting: time=\d+ threads=1", s[-2])
        assert re.fullmatch(r"# Ended \(code 0\) at \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \w+ \d{4}", s[-1])


# Jobs that cannot run -----------------------------------------------------------------------

def test_job_that_can_never_start_fails_fast(slurm_cluster, job_conf, tmp_path):  # noqa: F811
    # More time than the partition allows: Slurm queues it forever (PartitionTimeLimit).
    hours = slurm_cluster.max_time_minutes // 60 + 2
    t0 = time.monotonic()
    proc = run([SLURM_PL, "--config", job_conf, "--time", f"{hours}:00:00", "JOB=1:2",
                tmp_path / "log" / "x.JOB.log", "true"], slurm_cluster.env, timeout=60)
    assert proc.returncode == 1
    assert "can never start" in proc.stderr and "PartitionTimeLimit" in proc.stderr, proc.stderr
    assert time.monotonic() - t0 < 30
    assert queue_is_empty(slurm_cluster), "slurm.pl must cancel the job it gives up on"


def test_max_wait_gives_up_on_a_pending_job(slurm_cluster, job_conf, tmp_path):  # noqa: F811
    # --begin (mapped by the test config) keeps the job pending; --max-wait bounds the wait.
    proc = run([SLURM_PL, "--config", job_conf, "--max-wait", "2", "--begin", "now+3600",
                tmp_path / "x.log", "true"], slurm_cluster.env, timeout=60)
    assert proc.returncode == 1
    assert "did not start within --max-wait 2 s (pending: BeginTime)" in proc.stderr, proc.stderr
    assert queue_is_empty(slurm_cluster)


def test_impossible_resources_refused_by_sbatch(slurm_cluster, job_conf, tmp_path):  # noqa: F811
    proc = run([SLURM_PL, "--config", job_conf, "--mem", "99999999", "JOB=1:2",
                tmp_path / "x.JOB.log", "true"], slurm_cluster.env, timeout=60)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("slurm.pl: sbatch refused the jobs of ")
    assert "--mem-per-cpu 99999999" in lines[0] and str(job_conf) in lines[0]


# No cluster needed: option mapping through conf/slurm.conf, cmd.sh, user errors --------------

FAKE_SBATCH = """#!/usr/bin/env bash
printf '%s\\n' "$@" > "$(dirname "$0")/sbatch.args"
echo "sbatch: error: fake sbatch" >&2
exit 1
"""


def test_project_conf_maps_options_to_sbatch(tmp_path):
    fake = tmp_path / "fake_sbatch"
    fake.write_text(FAKE_SBATCH)
    fake.chmod(0o755)
    conf_text = (REPO_ROOT / "conf" / "slurm.conf").read_text()
    assert re.search(r"^command sbatch --export=PATH$", conf_text, re.M)
    conf = tmp_path / "slurm.conf"
    conf.write_text(re.sub(r"^command sbatch", f"command {fake}", conf_text, flags=re.M))
    proc = run([SLURM_PL, "--config", conf, "--gpu", "1", "--mem", "2G", "--num-threads", "3",
                "--time", "1:00:00", "--max-jobs-run", "2", "JOB=1:4", tmp_path / "log" / "x.JOB.log",
                "true"], recipe_env())
    assert proc.returncode == 1 and "sbatch refused" in proc.stderr and "fake sbatch" in proc.stderr
    args = " ".join((tmp_path / "sbatch.args").read_text().split())
    for want in ("--export=PATH", "--array=1-4%2", "-p gpu --gres=gpu:1", "--mem-per-cpu 2G",
                 "--cpus-per-task 3", "--time 1:00:00"):
        assert want in args, args
    # --gpu 0 (the default) adds no partition or gres.
    run([SLURM_PL, "--config", conf, "JOB=1:2", tmp_path / "log" / "y.JOB.log", "true"], recipe_env())
    args = (tmp_path / "sbatch.args").read_text()
    assert "gres" not in args and "-p" not in args.split() and "--array=1-2" in args


def test_cmd_sh_selects_backend():
    script = "cmd_backend=slurm; . ./cmd.sh; echo \"$train_cmd|$cuda_cmd|$decode_cmd\""
    out = run(["bash", "-c", script], recipe_env(), check=True).stdout.strip()
    assert out == ("slurm.pl --config conf/slurm.conf|slurm.pl --config conf/slurm.conf --gpu 1|"
                   "slurm.pl --config conf/slurm.conf")
    out = run(["bash", "-c", "unset cmd_backend; . ./cmd.sh; echo $train_cmd"], recipe_env(),
              check=True).stdout.strip()
    assert out == "run.pl"


@pytest.mark.parametrize("args,needle", [
    (["--config", "nope.conf", "JOB=1:2", "L.JOB", "true"], "config file 'nope.conf' (--config) not found"),
    (["--partition", "x", "JOB=1:2", "L.JOB", "true"], "--partition x is not mapped by conf/slurm.conf"),
    (["--gpu", "one", "L", "true"], "invalid value 'one' for --gpu"),
    (["--max-wait", "soon", "L", "true"], "--max-wait"),
    (["--max-jobs-run=2", "JOB=1:2", "L.JOB", "true"], "--max-jobs-run=2"),
    (["JOB=1:2", "L.log", "true"], "does not contain 'JOB'"),
])
def test_usage_errors_are_one_clear_line(tmp_path, args, needle):
    proc = run([SLURM_PL, *args], recipe_env())
    assert proc.returncode == 1
    assert needle in proc.stderr.splitlines()[0], proc.stderr


def test_bad_config_line_names_file_and_line(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("command sbatch\noption gpu -p gpu\n")
    proc = run([SLURM_PL, "--config", conf, tmp_path / "x.log", "true"], recipe_env())
    assert proc.returncode == 1
    assert f"{conf} line 2: cannot parse 'option gpu -p gpu'" in proc.stderr


# DDP through the cluster ---------------------------------------------------------------------

def write_tiny_features(root):
    """Random normalised features for 3 speakers x 4 train / 1 dev utterances: enough for train.py."""
    from voiceswap.data.ark import ArkWriter

    rng = np.random.default_rng(0)
    for subset, count in (("train", 4), ("dev", 1)):
        utts = [f"spk{s}-u{i}" for s in range(3) for i in range(count)]
        data = root / "data" / subset
        data.mkdir(parents=True)
        (data / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in utts))
        frames = {u: int(rng.integers(70, 90)) for u in utts}
        for feat, dim in (("mfcc39", 39), ("logmel80", 80)):
            out = root / "dump" / "norm" / feat / subset
            with ArkWriter(out / "feats.ark", out / "feats.scp") as writer:
                for utt in utts:
                    writer[utt] = rng.standard_normal((frames[utt], dim)).astype(np.float32)
            (out / "utt2num_frames").write_text("".join(f"{u} {frames[u]}\n" for u in utts))


def train_command(root, outdir):
    command = ["voiceswap/bin/train.py", "--config", "conf/vqvae.yaml", "--exp-dir", str(outdir),
               "--dump-dir", str(root / "dump"), "--data-dir", str(root / "data"), "--num-threads", "1"]
    for override in ("model.hidden_dim=16", "model.residual_dim=8", "model.code_dim=8", "model.codebook_size=4",
                     "model.speaker_dim=4", "data.batch_size=2", "data.crop_frames=32", "data.num_workers=0",
                     "train.max_steps=4", "train.log_interval=2", "train.valid_interval=4", "train.save_interval=4"):
        command += ["--set", override]
    return command


def test_ddp_training_under_slurm_pl_with_torchrun(slurm_cluster, job_conf, tmp_path):  # noqa: F811
    write_tiny_features(tmp_path)
    torchrun = [str(REPO_ROOT / ".venv" / "bin" / "torchrun"), "--standalone", "--nproc_per_node=2"]
    proc = run([SLURM_PL, "--config", job_conf, "--num-threads", "2", tmp_path / "log" / "train.log",
                *torchrun, *train_command(tmp_path, tmp_path / "exp")], slurm_cluster.env, timeout=300)
    log = (tmp_path / "log" / "train.log").read_text()
    assert proc.returncode == 0, log[-3000:]
    assert "world size 2 x grad_accum_steps 1" in log and "# Ended (code 0)" in log
    assert (tmp_path / "exp" / "checkpoints" / "step_4.pt").exists()


def test_ddp_ranks_from_srun(slurm_cluster, tmp_path):  # noqa: F811
    """srun starts the 2 ranks itself: train.py takes them from SLURM_PROCID / SLURM_NTASKS."""
    write_tiny_features(tmp_path)
    python = str(REPO_ROOT / ".venv" / "bin" / "python")
    proc = run(["srun", "--ntasks=2", "--cpus-per-task=1", "--kill-on-bad-exit=1", python,
                *train_command(tmp_path, tmp_path / "exp")], slurm_cluster.env, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "world size 2 x grad_accum_steps 1" in proc.stderr
    for rank in (0, 1):  # the ranks came from srun's SLURM_PROCID, not from torchrun
        assert f"rank {rank}/2 joined the gloo process group" in proc.stderr
    assert (tmp_path / "exp" / "checkpoints" / "step_4.pt").exists()
