# Job dispatch, as in Kaldi/ESPnet: every parallel step runs as
#   ${train_cmd} JOB=1:N log/x.JOB.log command ...
# run.pl runs the jobs on this machine. A cluster backend (slurm.pl) comes with its own issue;
# switch by setting cmd_backend.
cmd_backend=${cmd_backend:-local}

case "${cmd_backend}" in
  local)
    export train_cmd="run.pl"
    export cuda_cmd="run.pl"
    export decode_cmd="run.pl"
    ;;
  *)
    echo "cmd.sh: unknown cmd_backend '${cmd_backend}' (valid: local)" >&2
    return 1 2>/dev/null || exit 1
    ;;
esac
