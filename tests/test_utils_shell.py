"""Tests for the Kaldi-style helpers in utils/ (parse_options.sh, run.pl,
split_scp.pl, utt2spk/spk2utt conversion, filter_scp.pl, split_data.sh).

Each script is run as a subprocess from the repository root, as recipes run it.
"""

import os
import re
import subprocess
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
UTILS = REPO / "utils"


def run(args, *, input=None, check=None):
    """Runs a command from the repo root; check=True/False asserts the outcome."""
    proc = subprocess.run(
        [str(a) for a in args],
        cwd=REPO,
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check is True:
        assert proc.returncode == 0, f"{args} failed:\n{proc.stdout}\n{proc.stderr}"
    elif check is False:
        assert proc.returncode != 0, f"{args} should have failed:\n{proc.stdout}"
    return proc


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def keys(path):
    return [line.split()[0] for line in Path(path).read_text().splitlines()]


# --------------------------------------------------------------------------
# parse_options.sh


@pytest.fixture
def opt_script(tmp_path):
    """A recipe-like script declaring a few options and printing them."""
    script = tmp_path / "recipe.sh"
    script.write_text(
        textwrap.dedent(
            f"""\
            #!/usr/bin/env bash
            set -euo pipefail
            nj=4
            feat_type=mel
            use_gpu=false
            config=
            help_message="Usage: recipe.sh [options] <data-dir> <exp-dir>
              --nj <n>          # parallel jobs (default: $nj)
              --use-gpu <bool>  # (default: $use_gpu)"
            . {UTILS}/parse_options.sh
            echo "nj=$nj"
            echo "feat_type=$feat_type"
            echo "use_gpu=$use_gpu"
            echo "nargs=$#"
            for a in "$@"; do echo "arg=$a"; done
            """
        )
    )
    script.chmod(0o755)
    return script


def parsed(proc):
    return dict(
        line.split("=", 1) for line in proc.stdout.splitlines() if not line.startswith("arg=")
    ), [line[4:] for line in proc.stdout.splitlines() if line.startswith("arg=")]


def test_parse_options_defaults_and_no_args_under_set_u(opt_script):
    values, args = parsed(run([opt_script], check=True))
    assert values == {"nj": "4", "feat_type": "mel", "use_gpu": "false", "nargs": "0"}
    assert args == []


def test_parse_options_sets_declared_vars_dash_to_underscore(opt_script):
    proc = run([opt_script, "--nj", "8", "--feat-type", "world vocoder", "data/x", "exp/y"],
               check=True)
    values, args = parsed(proc)
    assert values["nj"] == "8"
    assert values["feat_type"] == "world vocoder"
    assert args == ["data/x", "exp/y"]


def test_parse_options_stops_at_first_positional_and_double_dash(opt_script):
    _, args = parsed(run([opt_script, "--nj", "2", "data/x", "--nj", "3"], check=True))
    assert args == ["data/x", "--nj", "3"]
    values, args = parsed(run([opt_script, "--", "--nj", "3"], check=True))
    assert values["nj"] == "4"
    assert args == ["--nj", "3"]


def test_parse_options_rejects_undeclared_option(opt_script):
    proc = run([opt_script, "--num-jobs", "8", "data/x"], check=False)
    assert proc.returncode == 1
    assert "--num-jobs" in proc.stderr
    assert "Usage: recipe.sh" in proc.stderr  # the help goes with the error
    assert "nj=" not in proc.stdout


def test_parse_options_rejects_equals_form(opt_script):
    proc = run([opt_script, "--nj=8", "data/x"], check=False)
    assert proc.returncode == 1
    assert "--nj=8" in proc.stderr and "--nj 8" in proc.stderr


def test_parse_options_validates_booleans(opt_script):
    values, _ = parsed(run([opt_script, "--use-gpu", "true"], check=True))
    assert values["use_gpu"] == "true"
    proc = run([opt_script, "--use-gpu", "yes"], check=False)
    assert proc.returncode == 1
    assert "--use-gpu" in proc.stderr and "yes" in proc.stderr
    # Non-boolean variables take any value.
    values, _ = parsed(run([opt_script, "--feat-type", "yes"], check=True))
    assert values["feat_type"] == "yes"


def test_parse_options_missing_value(opt_script):
    proc = run([opt_script, "--nj"], check=False)
    assert proc.returncode == 1
    assert "--nj" in proc.stderr and "value" in proc.stderr


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_parse_options_help(opt_script, flag):
    proc = run([opt_script, "--nj", "2", flag], check=True)
    assert proc.stdout.startswith("Usage: recipe.sh [options] <data-dir> <exp-dir>")
    assert "(default: 4)" in proc.stdout
    assert "nj=" not in proc.stdout  # exited before the script body


def test_parse_options_config_file(opt_script, tmp_path):
    conf = write(tmp_path / "conf" / "x.conf", """
        # comments and blank lines are fine

        nj=16
        feat_type=linear
        """)
    # The command line wins over the config, wherever --config appears.
    values, args = parsed(run([opt_script, "--nj", "2", "--config", conf, "d"], check=True))
    assert values["nj"] == "2" and values["feat_type"] == "linear"
    assert args == ["d"]
    values, _ = parsed(run([opt_script, "--config", conf], check=True))
    assert values["nj"] == "16"


def test_parse_options_config_errors(opt_script, tmp_path):
    bad = write(tmp_path / "bad.conf", "nj=3\nnum_jobs=3\n")
    proc = run([opt_script, "--config", bad], check=False)
    assert proc.returncode == 1
    assert f"{bad}:2" in proc.stderr and "num_jobs" in proc.stderr
    bad_bool = write(tmp_path / "bool.conf", "use_gpu=1\n")
    proc = run([opt_script, "--config", bad_bool], check=False)
    assert proc.returncode == 1 and "use_gpu" in proc.stderr
    proc = run([opt_script, "--config", tmp_path / "missing.conf"], check=False)
    assert proc.returncode == 1 and "missing.conf" in proc.stderr


# --------------------------------------------------------------------------
# run.pl

RUN_PL = UTILS / "run.pl"


def test_run_pl_substitutes_job_in_log_and_args(tmp_path):
    logdir = tmp_path / "exp" / "log"  # does not exist yet
    run([RUN_PL, "JOB=1:3", logdir / "x.JOB.log", "echo", "job=JOB", "dir=data/splitJOB"],
        check=True)
    for n in (1, 2, 3):
        lines = (logdir / f"x.{n}.log").read_text().splitlines()
        assert lines[0] == f"# echo job={n} dir=data/split{n}"
        assert lines[1].startswith("# Started at ")
        assert f"job={n} dir=data/split{n}" in lines
        assert re.fullmatch(r"# Accounting: time=\d+ threads=1", lines[-2])
        assert re.fullmatch(r"# Ended \(code 0\) at .+", lines[-1])
    assert not (logdir / "x.JOB.log").exists()


def test_run_pl_other_variable_name_and_single_job_form(tmp_path):
    run([RUN_PL, "SPLIT=2:3", tmp_path / "s.SPLIT.log", "echo", "part SPLIT"], check=True)
    assert "part 3" in (tmp_path / "s.3.log").read_text()
    assert not (tmp_path / "s.1.log").exists()
    run([RUN_PL, tmp_path / "one" / "single.log", "echo", "alone"], check=True)
    text = (tmp_path / "one" / "single.log").read_text()
    assert "\nalone\n" in text and "# Ended (code 0)" in text


def test_run_pl_failure_names_failed_log(tmp_path):
    log = tmp_path / "log" / "x.JOB.log"
    proc = run([RUN_PL, "JOB=1:3", log, "echo running JOB; exit $(( JOB == 2 ? 3 : 0 ))"],
               check=False)
    assert proc.returncode == 1
    assert "run.pl: 1 / 3 failed, log is in " in proc.stderr
    assert str(tmp_path / "log" / "x.*.log") in proc.stderr
    assert str(tmp_path / "log" / "x.2.log") in proc.stderr
    assert (tmp_path / "log" / "x.2.log").read_text().splitlines()[-1].startswith(
        "# Ended (code 3) at ")
    assert "# Ended (code 0)" in (tmp_path / "log" / "x.1.log").read_text()
    assert "# Ended (code 0)" in (tmp_path / "log" / "x.3.log").read_text()

    proc = run([RUN_PL, tmp_path / "single.log", "false"], check=False)
    assert proc.returncode == 1
    assert f"1 / 1 failed, log is in {tmp_path / 'single.log'}" in proc.stderr


def test_run_pl_stdout_and_stderr_go_to_log(tmp_path):
    run([RUN_PL, tmp_path / "x.log", "echo to-out; echo to-err >&2"], check=True)
    text = (tmp_path / "x.log").read_text()
    assert "to-out" in text and "to-err" in text


def test_run_pl_jobs_do_not_read_callers_stdin(tmp_path):
    # Parallel jobs sharing the caller's stdin would steal each other's input.
    run([RUN_PL, "JOB=1:2", tmp_path / "c.JOB.log", "cat"], input="secret\n", check=True)
    for n in (1, 2):
        assert "secret" not in (tmp_path / f"c.{n}.log").read_text()


def test_run_pl_pipes_in_quoted_command(tmp_path):
    out = tmp_path / "out"
    run([RUN_PL, "JOB=1:2", tmp_path / "p.JOB.log",
         f"echo value JOB | tr 0-9 a-j | sed s/value/v/ > {out}.JOB"], check=True)
    assert (tmp_path / "out.1").read_text() == "v b\n"
    assert (tmp_path / "out.2").read_text() == "v c\n"


def test_run_pl_kaldi_style_escaped_pipe_and_multiword_args(tmp_path):
    # Kaldi recipes write `\|` to get a pipe from run.pl's argument list.
    run([RUN_PL, tmp_path / "a.log", "echo", "hello", "|", "tr", "a-z", "A-Z"], check=True)
    assert "\nHELLO\n" in (tmp_path / "a.log").read_text()
    # ... while an argument containing spaces stays one argument.
    run([RUN_PL, tmp_path / "b.log", "python3", "-c",
         "import sys; print('n=%d' % (len(sys.argv) - 1))", "a b", "it's"], check=True)
    assert "\nn=2\n" in (tmp_path / "b.log").read_text()


def _intervals(tmp_path, njobs):
    spans = []
    for n in range(1, njobs + 1):
        start = int((tmp_path / f"t.{n}.start").read_text())
        end = int((tmp_path / f"t.{n}.end").read_text())
        spans.append((start, end))
    return spans


def _max_overlap(spans):
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans],
                    key=lambda x: (x[0], x[1]))
    cur = best = 0
    for _, delta in events:
        cur += delta
        best = max(best, cur)
    return best


TIMED_JOB = ("date +%s%N > {d}/t.JOB.start; sleep 0.3; date +%s%N > {d}/t.JOB.end")


@pytest.mark.parametrize("max_jobs,njobs,expect", [(1, 3, 1), (2, 4, 2), (None, 3, 3)])
def test_run_pl_max_jobs_run_limits_concurrency(tmp_path, max_jobs, njobs, expect):
    opts = [] if max_jobs is None else ["--max-jobs-run", max_jobs]
    run([RUN_PL, *opts, f"JOB=1:{njobs}", tmp_path / "log" / "t.JOB.log",
         TIMED_JOB.format(d=tmp_path)], check=True)
    overlap = _max_overlap(_intervals(tmp_path, njobs))
    if max_jobs is None:
        assert overlap >= 2, "without --max-jobs-run all jobs should run at once"
    else:
        assert overlap == expect


def test_run_pl_accepts_cluster_options(tmp_path):
    run([RUN_PL, "--gpu", "1", "--mem", "4G", "JOB=1:2", "--num-threads", "4",
         "--time", "2:00:00", tmp_path / "x.JOB.log", "true"], check=True)
    assert (tmp_path / "x.2.log").exists()


@pytest.mark.parametrize("args,needle", [
    (["--max-jobs-run", "0", "JOB=1:2", "LOG.JOB", "true"], "--max-jobs-run"),
    (["--max-jobs-run=2", "JOB=1:2", "LOG.JOB", "true"], "--max-jobs-run=2"),
    (["--bogus", "1", "JOB=1:2", "LOG.JOB", "true"], "--bogus"),
    (["JOB=3:1", "LOG.JOB", "true"], "JOB=3:1"),
    (["JOB=1:2", "LOG.JOB"], "no command"),
    (["JOB=1:2", "LOG.log", "true"], "does not contain 'JOB'"),
])
def test_run_pl_usage_errors(tmp_path, args, needle):
    args = [str(tmp_path / a) if a.startswith("LOG") else a for a in args]
    proc = run([RUN_PL, *args], check=False)
    assert proc.returncode == 1
    assert needle in proc.stderr


def test_run_pl_pick_failed_reruns_only_failed_jobs(tmp_path):
    log = tmp_path / "log" / "x.JOB.log"
    # Job 2 fails until the flag file exists; every run is counted per job.
    cmd = (f"echo ran >> {tmp_path}/count.JOB; "
           f"[ JOB != 2 ] || [ -e {tmp_path}/fixed ]")
    run([RUN_PL, "JOB=1:3", log, cmd], check=False)
    (tmp_path / "fixed").touch()
    # A job whose log is lost did not fail as far as --pick failed knows...
    (tmp_path / "log" / "x.3.log").unlink()
    proc = run([RUN_PL, "--pick", "failed", "JOB=1:3", log, cmd], check=True)
    assert "1 of 3" in proc.stderr
    counts = [len((tmp_path / f"count.{n}").read_text().split()) for n in (1, 2, 3)]
    assert counts == [1, 2, 1]
    # ... but it is incomplete, like one cut short.
    run([RUN_PL, "--pick", "incomplete", "JOB=1:3", log, cmd], check=True)
    counts = [len((tmp_path / f"count.{n}").read_text().split()) for n in (1, 2, 3)]
    assert counts == [1, 2, 2]


# --------------------------------------------------------------------------
# split_scp.pl

SPLIT_SCP = UTILS / "split_scp.pl"


def test_split_scp_even_contiguous(tmp_path):
    lines = [f"utt{i:02d} /wav/{i}.wav" for i in range(11)]
    scp = write(tmp_path / "wav.scp", "\n".join(lines) + "\n")
    outs = [tmp_path / f"out{n}.scp" for n in range(4)]
    run([SPLIT_SCP, scp, *outs], check=True)
    parts = [o.read_text().splitlines() for o in outs]
    assert [len(p) for p in parts] == [3, 3, 3, 2]  # Kaldi: the first parts get the extra
    assert sum(parts, []) == lines


def test_split_scp_by_speaker(tmp_path):
    spk_sizes = {"a": 3, "b": 1, "c": 4, "d": 2}
    u2s = "".join(f"{s}-{i} {s}\n" for s, k in spk_sizes.items() for i in range(k))
    utt2spk = write(tmp_path / "utt2spk", u2s)
    outs = [tmp_path / f"u{n}" for n in range(3)]
    run([SPLIT_SCP, "--utt2spk", utt2spk, utt2spk, *outs], check=True)
    parts = [o.read_text().splitlines() for o in outs]
    speakers = [{line.split()[1] for line in p} for p in parts]
    assert speakers == [{"a", "b"}, {"c"}, {"d"}]  # 4/4/2: the most even by speaker
    assert sum(parts, []) == u2s.splitlines()
    # Kaldi's --utt2spk=file spelling works too.
    run([SPLIT_SCP, f"--utt2spk={utt2spk}", utt2spk, *outs[:2]], check=True)
    assert not {line.split()[1] for line in outs[0].read_text().splitlines()} & {
        line.split()[1] for line in outs[1].read_text().splitlines()}


def test_split_scp_too_few_lines_or_speakers(tmp_path):
    scp = write(tmp_path / "wav.scp", "a x\nb y\nc z\n")
    outs = [tmp_path / f"o{n}" for n in range(4)]
    proc = run([SPLIT_SCP, scp, *outs], check=False)
    assert proc.returncode == 1
    assert "cannot split 3 utterances into 4 parts: use fewer jobs (--nj)" in proc.stderr
    u2s = write(tmp_path / "utt2spk", "a s1\nb s1\nc s2\n")
    proc = run([SPLIT_SCP, "--utt2spk", u2s, scp, *outs[:3]], check=False)
    assert proc.returncode == 1
    assert "cannot split 2 speakers into 3 parts" in proc.stderr


def test_split_scp_utterance_missing_from_utt2spk(tmp_path):
    scp = write(tmp_path / "wav.scp", "a x\nb y\n")
    u2s = write(tmp_path / "utt2spk", "a s1\n")
    proc = run([SPLIT_SCP, "--utt2spk", u2s, scp, tmp_path / "o1"], check=False)
    assert proc.returncode == 1
    assert "'b'" in proc.stderr and f"{scp}:2" in proc.stderr


# --------------------------------------------------------------------------
# utt2spk_to_spk2utt.pl / spk2utt_to_utt2spk.pl


def test_utt2spk_spk2utt_round_trip(tmp_path):
    u2s_text = "s2-u1 s2\ns1-u1 s1\ns2-u2 s2\ns3-u1 s3\n"
    utt2spk = write(tmp_path / "utt2spk", u2s_text)
    s2u = run([UTILS / "utt2spk_to_spk2utt.pl", utt2spk], check=True).stdout
    # Speakers in order of first appearance, utterances in input order.
    assert s2u == "s2 s2-u1 s2-u2\ns1 s1-u1\ns3 s3-u1\n"
    # stdin works as well as a file argument.
    assert run([UTILS / "utt2spk_to_spk2utt.pl"], input=u2s_text, check=True).stdout == s2u
    back = run([UTILS / "spk2utt_to_utt2spk.pl"], input=s2u, check=True).stdout
    assert sorted(back.splitlines()) == sorted(u2s_text.splitlines())


def test_utt2spk_to_spk2utt_bad_line(tmp_path):
    utt2spk = write(tmp_path / "utt2spk", "u1 s1\nu2\n")
    proc = run([UTILS / "utt2spk_to_spk2utt.pl", utt2spk], check=False)
    assert proc.returncode == 1 and f"{utt2spk}:2" in proc.stderr


# --------------------------------------------------------------------------
# filter_scp.pl

FILTER = UTILS / "filter_scp.pl"


@pytest.fixture
def segments(tmp_path):
    return write(tmp_path / "segments", """
        u1 rec1 0.0 1.0
        u2 rec2 0.0 1.5
        u3 rec1 1.0 2.0
        u4 rec3 0.0 0.5
        """)


def test_filter_scp_include_exclude(tmp_path, segments):
    ids = write(tmp_path / "ids", "u3 anything\nu1\nzz\n")
    out = run([FILTER, ids, segments], check=True).stdout
    assert keys_of(out) == ["u1", "u3"]  # the table's order, not the list's
    out = run([FILTER, "--exclude", ids, segments], check=True).stdout
    assert keys_of(out) == ["u2", "u4"]
    out = run([FILTER, ids], input=segments.read_text(), check=True).stdout
    assert keys_of(out) == ["u1", "u3"]


def test_filter_scp_field(tmp_path, segments):
    recs = write(tmp_path / "recs", "rec1\n")
    out = run([FILTER, "-f", "2", recs, segments], check=True).stdout
    assert keys_of(out) == ["u1", "u3"]
    out = run([FILTER, "--exclude", "-f", "2", recs, segments], check=True).stdout
    assert keys_of(out) == ["u2", "u4"]
    proc = run([FILTER, "-f", "9", recs, segments], check=False)
    assert proc.returncode == 1 and f"{segments}:1" in proc.stderr


def keys_of(text):
    return [line.split()[0] for line in text.splitlines()]


# --------------------------------------------------------------------------
# split_data.sh

SPLIT_DATA = UTILS / "split_data.sh"


def make_data_dir(path, speakers, utts_per_spk=3, with_segments=False):
    path.mkdir(parents=True)
    u2s, wav, text, dur, ctm, segs = [], [], [], [], [], []
    for s in speakers:
        for i in range(utts_per_spk):
            utt = f"{s}-{i:02d}"
            u2s.append(f"{utt} {s}")
            text.append(f"{utt} some words {i}")
            dur.append(f"{utt} 1.{i}")
            ctm.append(f"{utt} 1 0.00 0.10 sil")
            ctm.append(f"{utt} 1 0.10 0.20 a")
            if with_segments:
                rec = f"{s}-rec{i // 2}"
                segs.append(f"{utt} {rec} {i}.0 {i}.5")
                if i % 2 == 0:
                    wav.append(f"{rec} /wav/{rec}.wav")
            else:
                wav.append(f"{utt} /wav/{utt}.wav")
    for name, lines in [("utt2spk", u2s), ("wav.scp", wav), ("text", text),
                        ("utt2dur", dur), ("phones.ctm", ctm)]:
        (path / name).write_text("\n".join(lines) + "\n")
    if with_segments:
        (path / "segments").write_text("\n".join(segs) + "\n")
    return path


def read_parts(data, nj):
    parts = []
    for n in range(1, nj + 1):
        d = data / f"split{nj}" / str(n)
        parts.append({f.name: f.read_text().splitlines() for f in d.iterdir()})
    return parts


def check_consistent(data, parts, utt_files=("text", "utt2dur")):
    all_utts = []
    for p in parts:
        utts = [line.split()[0] for line in p["utt2spk"]]
        assert utts, "empty part"
        for f in utt_files:
            assert [line.split()[0] for line in p[f]] == utts, f
        assert sorted({line.split()[0] for line in p["phones.ctm"]}) == sorted(utts)
        spk2utt = {line.split()[0]: line.split()[1:] for line in p["spk2utt"]}
        assert sorted(u for us in spk2utt.values() for u in us) == sorted(utts)
        all_utts += utts
    assert sorted(all_utts) == sorted(keys(data / "utt2spk"))


def test_split_data_by_speaker(tmp_path):
    data = make_data_dir(tmp_path / "train", ["spkA", "spkB", "spkC", "spkD", "spkE"])
    run([SPLIT_DATA, data, 2], check=True)
    parts = read_parts(data, 2)
    check_consistent(data, parts)
    for p in parts:
        assert keys_of("\n".join(p["wav.scp"])) == keys_of("\n".join(p["utt2spk"]))
    spks = [{line.split()[1] for line in p["utt2spk"]} for p in parts]
    assert not spks[0] & spks[1]
    assert spks[0] | spks[1] == {"spkA", "spkB", "spkC", "spkD", "spkE"}


def test_split_data_per_utt(tmp_path):
    data = make_data_dir(tmp_path / "train", ["spkA", "spkB"], utts_per_spk=4)
    run([SPLIT_DATA, "--per-utt", data, 4], check=True)
    parts = read_parts(data, 4)
    check_consistent(data, parts)
    assert [len(p["utt2spk"]) for p in parts] == [2, 2, 2, 2]


def test_split_data_falls_back_to_per_utt_with_warning(tmp_path):
    data = make_data_dir(tmp_path / "train", ["spkA", "spkB"], utts_per_spk=3)
    proc = run([SPLIT_DATA, data, 3], check=True)
    assert "WARNING" in proc.stderr and "2 speakers" in proc.stderr
    parts = read_parts(data, 3)
    check_consistent(data, parts)
    assert [len(p["utt2spk"]) for p in parts] == [2, 2, 2]


def test_split_data_with_segments_filters_recordings(tmp_path):
    data = make_data_dir(tmp_path / "train", ["spkA", "spkB", "spkC"], utts_per_spk=4,
                         with_segments=True)
    run([SPLIT_DATA, data, 3], check=True)
    parts = read_parts(data, 3)
    check_consistent(data, parts, utt_files=("text", "utt2dur", "segments"))
    for p in parts:
        recs = sorted({line.split()[1] for line in p["segments"]})
        assert sorted(keys_of("\n".join(p["wav.scp"]))) == recs


def test_split_data_skips_when_up_to_date(tmp_path):
    data = make_data_dir(tmp_path / "train", ["spkA", "spkB", "spkC"])
    run([SPLIT_DATA, data, 2], check=True)
    marker = data / "split2" / "1" / "utt2spk"
    before = marker.stat().st_mtime_ns
    proc = run([SPLIT_DATA, data, 2], check=True)
    assert "up to date" in proc.stderr
    assert marker.stat().st_mtime_ns == before
    # A changed source file makes it split again.
    os.utime(data / "text")
    proc = run([SPLIT_DATA, data, 2], check=True)
    assert "up to date" not in proc.stderr
    assert marker.stat().st_mtime_ns != before


def test_split_data_errors(tmp_path):
    data = make_data_dir(tmp_path / "train", ["spkA"], utts_per_spk=3)
    proc = run([SPLIT_DATA, data, 4], check=False)
    assert proc.returncode == 1
    assert "cannot split 3 utterances" in proc.stderr and "--nj" in proc.stderr
    proc = run([SPLIT_DATA, data, "two"], check=False)
    assert proc.returncode == 1 and "'two'" in proc.stderr
    proc = run([SPLIT_DATA, tmp_path / "nowhere", 2], check=False)
    assert proc.returncode == 1 and "nowhere" in proc.stderr
    proc = run([SPLIT_DATA, data], check=False)
    assert proc.returncode == 1 and "Usage" in proc.stderr
    with open(data / "utt2spk", "a") as f:
        f.write("spkA-99 spkA\n")
    proc = run([SPLIT_DATA, data, 2], check=False)
    assert proc.returncode == 1 and "spkA-99" in proc.stderr and "wav.scp" in proc.stderr
