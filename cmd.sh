# shellcheck shell=bash disable=SC2317  # sourced: "return || exit" is how a sourced file stops
# Job dispatch, as in Kaldi/ESPnet: every parallel step runs as
#   ${train_cmd} JOB=1:N log/x.JOB.log command ...
# run.pl runs the jobs on this machine; slurm.pl submits them as one Slurm job array and waits
# (options mapped to sbatch by conf/slurm.conf; see doc/cluster.md). Switch by setting cmd_backend,
# e.g. `cmd_backend=slurm ./run.sh`.
cmd_backend=${cmd_backend:-local}

case "${cmd_backend}" in
  local)
    export train_cmd="run.pl"
    export cuda_cmd="run.pl"
    export decode_cmd="run.pl"
    ;;
  slurm)
    export train_cmd="slurm.pl --config conf/slurm.conf"
    export cuda_cmd="slurm.pl --config conf/slurm.conf --gpu 1"
    export decode_cmd="slurm.pl --config conf/slurm.conf"
    ;;
  *)
    echo "cmd.sh: unknown cmd_backend '${cmd_backend}' (valid: local, slurm)" >&2
    return 1 2>/dev/null || exit 1
    ;;
esac
