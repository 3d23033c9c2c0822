#!/usr/bin/env perl
# Slurm job dispatcher with the interface of run.pl (and of Kaldi's slurm.pl), so a recipe moves
# from one machine to a cluster by changing $cmd only (cmd.sh: cmd_backend=slurm).
#
# JOB=1:N becomes ONE sbatch job array (--array=1-N%k); every array task writes its log with
# run.pl's framing and then a status file holding its exit code.  Success is decided from those
# status files, never from sbatch's or squeue's word: `sbatch --wait --array` can return 0 after
# a task failed, because finished task records are purged after MinJobAge.
use strict;
use warnings;
use Cwd qw(getcwd);
use File::Basename qw(dirname basename);
use File::Path qw(make_path);
use File::Spec;
use POSIX qw(strftime);
use Time::HiRes qw(sleep time);

my $usage = <<'EOF';
Usage: slurm.pl [options] [JOB=1:N] <log-file> <command> [<arg> ...]
Runs <command> on a Slurm cluster, once per job, as one sbatch job array, with
its stdout and stderr in <log-file>; waits until every job has finished and
fails if any job failed.  The name JOB (any name: SPLIT=1:4 works too) is
replaced by the job number in <log-file> and in every argument.  The command is
quoted exactly as run.pl quotes it (see run.pl --help).
e.g.: slurm.pl --config conf/slurm.conf --mem 2G JOB=1:4 exp/log/feats.JOB.log \
        voiceswap-feats data/split4/JOB out.JOB
Options:
  --config <file>      # maps the options below to sbatch options (default:
                       # conf/slurm.conf if it exists, else a built-in copy of it)
  --gpu <n>            # GPUs per job     (config: option gpu=* ...)
  --mem <m>            # memory, e.g. 4G  (config: option mem=* ...)
  --num-threads <t>    # CPUs per job     (config: option num_threads=* ...)
  --time <t>           # time limit, e.g. 4:00:00 (config: option time=* ...)
  --<name> <value>     # any other option the config maps with 'option name=...'
  --max-jobs-run <k>   # at most k jobs of this call run at once (--array=...%k)
  --pick <all|failed|incomplete>
                       # failed: re-run only jobs whose log ends with a non-zero
                       # code; incomplete: also jobs never run or interrupted
  --max-wait <s>       # give up (and scancel) if no job has started s seconds
                       # after submission (default: 0, wait as long as it takes;
                       # jobs Slurm says can never run fail at once anyway)
Config format (Kaldi's): 'command sbatch ...' is the submit command;
'option name=value args' / 'option name=* args with $0' map --name value;
'default name=value' applies when --name is not given.
Logs of Slurm itself and the job script are in <log-dir>/q/.
EOF

my $me = "slurm.pl";

sub usage_error {
  my ($msg) = @_;
  print STDERR "$me: $msg\n" if defined $msg;
  print STDERR $usage;
  exit 1;
}

sub fail {
  print STDERR "$me: $_[0]\n";
  exit 1;
}

# Used when neither --config nor conf/slurm.conf exists; the same as the project's conf/slurm.conf.
my $default_config = <<'EOF';
command sbatch --export=PATH
option time=* --time $0
option mem=* --mem-per-cpu $0
option mem=0
default num_threads=1
option num_threads=* --cpus-per-task $0
option num_threads=1 --cpus-per-task 1
default gpu=0
option gpu=0
option gpu=* -p gpu --gres=gpu:$0
EOF

my $max_jobs_run = 0;    # 0: no limit
my $pick = "all";
my $max_wait = 0;        # 0: no limit
my $config;
my %cli_opts;            # name (underscores) -> value, mapped through the config
my ($jobname, $jobstart, $jobend);

# As in Kaldi, options may come before or after the JOB=a:b argument.
while (@ARGV) {
  my $arg = $ARGV[0];
  if ($arg eq "--help" || $arg eq "-h") {
    print $usage;
    exit 0;
  } elsif ($arg =~ /^(--[\w-]+)=/) {
    fail("option '$arg' uses '=': write it as '$1 <value>'");
  } elsif ($arg eq "--max-jobs-run" || $arg eq "-tc") {
    @ARGV >= 2 or usage_error("option $arg needs a value");
    $max_jobs_run = $ARGV[1];
    $max_jobs_run =~ /^[1-9]\d*$/
      or fail("invalid value '$max_jobs_run' for $arg: expected a positive integer");
    splice(@ARGV, 0, 2);
  } elsif ($arg eq "--pick") {
    @ARGV >= 2 or usage_error("option $arg needs a value");
    $pick = $ARGV[1];
    $pick =~ /^(all|failed|incomplete)$/
      or fail("invalid value '$pick' for --pick: expected all, failed or incomplete");
    splice(@ARGV, 0, 2);
  } elsif ($arg eq "--max-wait") {
    @ARGV >= 2 or usage_error("option $arg needs a value");
    $max_wait = $ARGV[1];
    $max_wait =~ /^\d+$/
      or fail("invalid value '$max_wait' for --max-wait: expected seconds (0: no limit)");
    splice(@ARGV, 0, 2);
  } elsif ($arg eq "--config") {
    @ARGV >= 2 or usage_error("option $arg needs a value");
    $config = $ARGV[1];
    splice(@ARGV, 0, 2);
  } elsif ($arg eq "-V") {
    shift @ARGV;    # GridEngine's "export environment": the job script always does it
  } elsif ($arg =~ /^--([A-Za-z][\w-]*)$/) {
    @ARGV >= 2 or usage_error("option $arg needs a value");
    (my $name = $1) =~ s/-/_/g;
    my $val = $ARGV[1];
    if ($name eq "gpu" && $val !~ /^\d+$/) {
      fail("invalid value '$val' for --gpu: expected a number of GPUs (0, 1, ...)");
    }
    if ($name eq "num_threads" && $val !~ /^[1-9]\d*$/) {
      fail("invalid value '$val' for --num-threads: expected a positive integer");
    }
    $cli_opts{$name} = $val;
    splice(@ARGV, 0, 2);
  } elsif ($arg =~ /^-/) {
    fail("unknown option '$arg'; run 'slurm.pl --help' for the accepted options");
  } elsif ($arg =~ /^([A-Za-z_]\w*)=(\d+):(\d+)$/) {
    defined $jobname and fail("two job ranges given ('$jobname=$jobstart:$jobend' and '$arg')");
    ($jobname, $jobstart, $jobend) = ($1, $2, $3);
    $jobstart >= 1
      or fail("invalid job range '$arg': the first job must be 1 or more");
    $jobstart <= $jobend
      or fail("invalid job range '$arg': the first job is after the last");
    shift @ARGV;
  } elsif ($arg =~ /^([A-Za-z_]\w*)=(\d+)$/) {
    defined $jobname and fail("two job ranges given ('$jobname=$jobstart:$jobend' and '$arg')");
    ($jobname, $jobstart, $jobend) = ($1, $2, $2);
    $jobstart >= 1 or fail("invalid job '$arg': job numbers start at 1");
    shift @ARGV;
  } elsif ($arg =~ /^\w+=.*:/) {
    fail("malformed job range '$arg': expected NAME=<first>:<last>, e.g. JOB=1:4");
  } else {
    last;
  }
}

@ARGV >= 2 or usage_error(@ARGV ? "no command given after the log file '$ARGV[0]'"
                                 : "missing <log-file> and <command>");
my $logfile_pattern = shift @ARGV;
my @cmd_args = @ARGV;

if (!defined $jobname) {
  ($jobstart, $jobend) = (1, 1);
} elsif ($jobend > $jobstart && index($logfile_pattern, $jobname) < 0) {
  fail("log file '$logfile_pattern' does not contain '$jobname': the $jobname=$jobstart:$jobend "
       . "jobs would all write to it; put $jobname in its name, e.g. log/x.$jobname.log");
}

# ---------------------------------------------------------------------------------------------
# The config: Kaldi's format, so sites can reuse their Kaldi/ESPnet conf/slurm.conf as is.

my $config_name;
my @config_lines;
if (!defined $config && -f "conf/slurm.conf") {
  $config = "conf/slurm.conf";
}
if (defined $config) {
  -f $config or fail("config file '$config' (--config) not found; give an existing file, "
                     . "e.g. --config conf/slurm.conf");
  open(my $fh, "<", $config) or fail("cannot read config file '$config': $!");
  @config_lines = <$fh>;
  close($fh);
  $config_name = $config;
} else {
  @config_lines = split(/\n/, $default_config);
  $config_name = "slurm.pl's built-in config";
}

my @submit_cmd;
my (%opt_exact, %opt_wild, %opt_default);    # name -> {value -> [args]} / [args] / value
my $lineno = 0;
for my $line (@config_lines) {
  $lineno++;
  chomp $line;
  $line =~ s/^\s+|\s+$//g;
  next if $line eq "" || $line =~ /^#/;
  $line =~ s/\s+#.*$//;    # trailing comment
  my @w = split(/\s+/, $line);
  my $key = shift @w;
  if ($key eq "command") {
    @w or fail("$config_name line $lineno: 'command' needs the submit command, e.g. 'command sbatch --export=PATH'");
    @submit_cmd = @w;
  } elsif ($key eq "option" && @w && $w[0] =~ /^(\w+)=(.*)$/) {
    my ($name, $val) = ($1, $2);
    shift @w;
    if ($val eq "*") {
      $opt_wild{$name} = [@w];
    } else {
      $opt_exact{$name}{$val} = [@w];
    }
  } elsif ($key eq "default" && @w == 1 && $w[0] =~ /^(\w+)=(.+)$/) {
    $opt_default{$1} = $2;
  } else {
    fail("$config_name line $lineno: cannot parse '$line'; expected 'command <submit command>', "
         . "'option <name>=<value|*> <sbatch options>' or 'default <name>=<value>'");
  }
}
@submit_cmd or fail("$config_name has no 'command' line; add e.g. 'command sbatch --export=PATH'");

my %opts = (%opt_default, %cli_opts);
my @sbatch_opts;
for my $name (sort keys %opts) {
  my $val = $opts{$name};
  my $args;
  if (exists $opt_exact{$name} && exists $opt_exact{$name}{$val}) {
    $args = $opt_exact{$name}{$val};
  } elsif (exists $opt_wild{$name}) {
    $args = $opt_wild{$name};
  } else {
    (my $flag = $name) =~ s/_/-/g;
    fail("--$flag $val is not mapped by $config_name: add a line 'option $name=* <sbatch options "
         . "using \$0>' (or 'option $name=$val ...') to it");
  }
  push @sbatch_opts, map { (my $a = $_) =~ s/\$0/$val/g; $a } @$args;
}
my $num_threads = $opts{num_threads} // 1;

# ---------------------------------------------------------------------------------------------
# Jobs, logs and the job script.

sub shell_word {    # as run.pl: words without white space or quotes reach bash untouched
  my ($w) = @_;
  return $w if $w =~ /^[^\s'"\\]+$/;
  $w =~ s/'/'\\''/g;
  return "'$w'";
}

sub squote {        # always quoted: for values written into the job script
  my ($w) = @_;
  $w =~ s/'/'\\''/g;
  return "'$w'";
}

sub substitute {
  my ($s, $id) = @_;
  return $s unless defined $jobname;
  $s =~ s/\Q$jobname\E/$id/g;
  return $s;
}

sub command_for {
  my ($id) = @_;
  my @args = map { substitute($_, $id) } @cmd_args;
  return $args[0] if @args == 1;
  return join(" ", map { shell_word($_) } @args);
}

sub ended_code {    # the last "# Ended (code N)" of a log, or undef
  my ($log) = @_;
  open(my $fh, "<", $log) or return undef;
  my $code;
  while (my $line = <$fh>) {
    $code = $1 if $line =~ /^# Ended \(code (\d+)/;
  }
  close($fh);
  return $code;
}

my @jobs;
for my $id ($jobstart .. $jobend) {
  my $log = substitute($logfile_pattern, $id);
  if ($pick ne "all") {
    my $code = ended_code($log);
    next if defined $code && $code == 0;
    next if $pick eq "failed" && !defined $code;
  }
  push @jobs, $id;
}
my $num_total = $jobend - $jobstart + 1;
if ($pick ne "all") {
  print STDERR "$me: --pick $pick: running " . scalar(@jobs) . " of $num_total jobs"
    . (@jobs ? " (" . join(" ", @jobs) . ")" : "") . "\n";
}
exit 0 unless @jobs;

my $cwd = getcwd();
# Slurm's own output, the job script and the status files go to <log-dir>/q, as in Kaldi.
my $qdir = File::Spec->rel2abs(dirname(substitute($logfile_pattern, $jobs[0])) . "/q");
(my $tag = basename($logfile_pattern)) =~ s/\.log$//;
if (defined $jobname) {
  $tag =~ s/\Q$jobname\E//g;
  $tag =~ s/\.\.+/./g;
  $tag =~ s/^\.|\.$//g;
}
$tag =~ s/[^\w.+-]/_/g;
$tag = "job" if $tag eq "";
my $script = "$qdir/$tag.sh";
sub status_file { return "$qdir/$tag.$_[0].status"; }

# Slurm does not create the directory of a log (or of -o): make them all here, where a user error
# is seen at once, not in a node's Slurm log.
for my $d ($qdir, map { dirname(substitute($logfile_pattern, $_)) } @jobs) {
  next if -d $d;
  eval { make_path($d); 1 } or fail("cannot create log directory '$d': $@");
}
for my $id (@jobs) {
  # A stale status or log would make an unfinished job look finished.
  for my $f (status_file($id), substitute($logfile_pattern, $id)) {
    next unless -e $f;
    unlink($f) or fail("cannot remove old '$f' before re-running job $id: $!");
  }
  unlink("$qdir/$tag.$id.out");
}

# The job sees the caller's environment (PATH with the venv, LC_ALL, OMP_NUM_THREADS, ...) as
# run.pl's jobs do, whatever --export the config's sbatch line uses (sites often force NONE):
# the script sets it itself.  Left out: what Slurm or the node must set for the job itself.
my %node_own = map { $_ => 1 } qw(HOSTNAME HOST PWD OLDPWD SHLVL _ TMPDIR TMP TEMP
  CUDA_VISIBLE_DEVICES GPU_DEVICE_ORDINAL ROCR_VISIBLE_DEVICES HIP_VISIBLE_DEVICES
  XDG_RUNTIME_DIR XDG_SESSION_ID DISPLAY SSH_AUTH_SOCK SSH_CLIENT SSH_CONNECTION SSH_TTY
  TERM SHELLOPTS BASHOPTS BASH_ENV ENV PPID UID EUID);
my $env_lines = "";
for my $k (sort keys %ENV) {
  next unless $k =~ /^[A-Za-z_][A-Za-z0-9_]*$/;
  next if $node_own{$k};
  next if $k =~ /^(SLURM|SBATCH|SRUN|SALLOC|SQUEUE|SINFO|SCANCEL|PMI|PMIX|OMPI)_/ && $k ne "SLURM_CONF";
  $env_lines .= "export $k=" . squote($ENV{$k}) . "\n";
}

my $case_lines = "";
for my $id (@jobs) {
  my $log = File::Spec->rel2abs(substitute($logfile_pattern, $id));
  $case_lines .= "  $id) log=" . squote($log) . "; cmd=" . squote(command_for($id)) . " ;;\n";
}

my $date_fmt = "+%a %b %e %H:%M:%S %Z %Y";    # run.pl's strftime format
my $qcwd = squote($cwd);
my $qstatus_prefix = squote("$qdir/$tag.");
open(my $sfh, ">", "$script.tmp") or fail("cannot write job script '$script.tmp': $!");
print $sfh <<"EOF";
#!/usr/bin/env bash
# Written by slurm.pl for $logfile_pattern: Slurm array task N runs job N.
# Environment of the caller:
$env_lines
cd $qcwd || echo "slurm.pl job script: cannot cd to $qcwd on \$(hostname); relative paths will fail" >&2
task=\${SLURM_ARRAY_TASK_ID:-}
case "\$task" in
$case_lines  *) echo "slurm.pl job script: no job for array task '\$task'" >&2; exit 1 ;;
esac
status=$qstatus_prefix\$task.status
# The status file is slurm.pl's only evidence of how the job ended: written last, atomically.
write_status() { echo "\$1" > "\$status.tmp" && mv -f "\$status.tmp" "\$status"; }
if ! { printf '# %s\\n# Started at %s\\n# Running on %s as Slurm job %s\\n#\\n' "\$cmd" \\
         "\$(date '$date_fmt')" "\$(hostname)" "\${SLURM_ARRAY_JOB_ID:-?}_\$task" > "\$log"; }; then
  echo "slurm.pl job script: cannot write log file \$log on \$(hostname)" >&2
  write_status 1
  exit 1
fi
# Slurm sends SIGTERM to every process of the job on scancel or at the time limit; with a trap
# (not an ignore, which children would inherit) this script outlives the command to record it.
trap 'echo "# slurm.pl: SIGTERM from Slurm (time limit, scancel or preemption)" >> "\$log"' TERM
start=\$(date +%s)
bash -c "\$cmd" < /dev/null >> "\$log" 2>&1
code=\$?
{ echo "# Accounting: time=\$((\$(date +%s) - start)) threads=$num_threads"
  echo "# Ended (code \$code) at \$(date '$date_fmt')"; } >> "\$log"
write_status "\$code"
exit "\$code"
EOF
close($sfh) or fail("cannot write job script '$script.tmp': $!");
rename("$script.tmp", $script) or fail("cannot write job script '$script': $!");
chmod(0755, $script);

# ---------------------------------------------------------------------------------------------
# Submit and wait.

sub capture {    # (exit code, stdout+stderr) of a command run without a shell
  my @cmd = @_;
  my $pid = open(my $fh, "-|");
  defined $pid or return (-1, "fork failed: $!");
  if ($pid == 0) {
    open(STDERR, ">&", \*STDOUT);
    open(STDIN, "<", "/dev/null");
    exec(@cmd) or do { print "cannot run '$cmd[0]': $!\n"; POSIX::_exit(127); };
  }
  local $/;
  my $out = <$fh> // "";
  close($fh);
  return ($? >> 8, $out);
}

sub array_spec {    # 1 2 3 5 7 8 -> 1-3,5,7-8
  my @ids = @_;
  my @parts;
  my $i = 0;
  while ($i < @ids) {
    my $j = $i;
    $j++ while $j + 1 < @ids && $ids[$j + 1] == $ids[$j] + 1;
    push @parts, $i == $j ? $ids[$i] : "$ids[$i]-$ids[$j]";
    $i = $j + 1;
  }
  return join(",", @parts);
}

my $array = array_spec(@jobs) . ($max_jobs_run > 0 ? "%$max_jobs_run" : "");
my @sbatch = (@submit_cmd, "--parsable", "--job-name=$tag", "--array=$array",
              "--output=$qdir/$tag.%a.out", "--chdir=$cwd", @sbatch_opts, $script);
my ($rc, $out) = capture(@sbatch);
my ($slurm_job) = $rc == 0 ? $out =~ /^\s*(\d+)/m : ();
if (!defined $slurm_job) {
  (my $out_line = $out) =~ s/\s*\n\s*/; /g;
  $out_line =~ s/;\s*$//;
  fail("sbatch refused the jobs of $logfile_pattern ($out_line); the command was: "
       . join(" ", map { shell_word($_) } @sbatch) . "; fix the options or $config_name");
}
my $all_logs = $logfile_pattern;
$all_logs =~ s/\Q$jobname\E/*/g if defined $jobname;

# Interrupting us must not leave the jobs running unattended.
for my $sig (qw(INT TERM HUP)) {
  $SIG{$sig} = sub {
    capture("scancel", $slurm_job);
    print STDERR "$me: interrupted: cancelled Slurm job $slurm_job ($all_logs)\n";
    exit 130;
  };
}

# Pending reasons that no amount of waiting fixes: the job asks for more than the partition,
# QOS or account allows, or depends on a job that failed.
my %hopeless = map { $_ => 1 } qw(PartitionTimeLimit PartitionNodeLimit PartitionConfig
  BadConstraints InvalidAccount InvalidQOS DependencyNeverSatisfied QOSMaxWallDurationPerJobLimit
  AssocMaxWallDurationPerJobLimit QOSMaxCpuPerJobLimit QOSMaxNodePerJobLimit QOSMaxGRESPerJob
  QOSMaxMemoryPerJob);
# Reasons a normal queue gives; any other is shown to the user once.
my %ordinary = map { $_ => 1 } qw(None Priority Resources JobArrayTaskLimit BeginTime
  Dependency Prolog);

# Returns (ok, started, @pending_reasons); ok is 0 if squeue failed for another reason than
# the job having left the queue; an empty queue gives (1, undef).
sub queue_state {
  my ($rc, $out) = capture("squeue", "-h", "-j", $slurm_job, "-o", "%T|%r");
  if ($rc != 0) {
    return (1, undef) if $out =~ /Invalid job id/i;    # finished and purged
    return (0, undef, $out);
  }
  my @rows = grep { /\S/ } split(/\n/, $out);
  return (1, undef) unless @rows;
  my $started = 0;
  my @reasons;
  for my $row (@rows) {
    my ($state, $reason) = split(/\|/, $row, 2);
    if ($state eq "PENDING") {
      push @reasons, $reason // "";
    } else {
      $started = 1;
    }
  }
  return (1, $started, @reasons);
}

my $t0 = time;
my $interval = 0.2;        # grows to 10 s: quick for short jobs, light on slurmctld for long ones
my $any_started = 0;
my $gone_since;            # when squeue first showed none of our tasks left
my $gone_grace = 10;       # then wait this long for status files (slow shared file systems)
my %hopeless_seen;
my %reason_shown;
my $squeue_errors = 0;
while (1) {
  my @missing = grep { !-e status_file($_) } @jobs;
  last unless @missing;
  $any_started = 1 if @missing < @jobs || grep { -e substitute($logfile_pattern, $_) } @jobs;

  my ($ok, $started, @reasons) = queue_state();
  if (!$ok) {
    # The controller may be restarting: say so, keep waiting.
    $squeue_errors++;
    if ($squeue_errors == 3 || $squeue_errors % 60 == 0) {
      (my $msg = $reasons[0] // "") =~ s/\s+/ /g;
      print STDERR "$me: warning: squeue fails for Slurm job $slurm_job ($msg); still waiting\n";
    }
  } elsif (!defined $started) {
    $gone_since //= time;
    last if time - $gone_since > $gone_grace;
  } else {
    $squeue_errors = 0;
    undef $gone_since;
    $any_started ||= $started;
    for my $r (@reasons) {
      (my $short = $r) =~ s/[,(].*//;
      # Still there seconds later: a verdict of the scheduler, not a passing state.
      if ($hopeless{$short} && time - ($hopeless_seen{$short} //= time) >= 3) {
        capture("scancel", $slurm_job);
        fail("Slurm job $slurm_job ($all_logs) can never start: Slurm says '$r' (it asks for more "
             . "than the partition, QOS or account allows); cancelled it; change the options "
             . "(--time, --mem, --num-threads, --gpu) or $config_name");
      }
      if (!$ordinary{$short} && !$hopeless{$short} && !$reason_shown{$r}++) {
        print STDERR "$me: Slurm job $slurm_job is pending: $r\n";
      }
    }
    if (!$any_started && $max_wait > 0 && time - $t0 > $max_wait) {
      capture("scancel", $slurm_job);
      fail("Slurm job $slurm_job ($all_logs) did not start within --max-wait $max_wait s"
           . (@reasons ? " (pending: $reasons[0])" : "") . "; cancelled it; raise --max-wait "
           . "or ask for fewer resources");
    }
  }
  sleep($interval);
  $interval = $interval * 1.5 > 10 ? 10 : $interval * 1.5;
}

# ---------------------------------------------------------------------------------------------
# Verdict, from the status files alone.

my (@failed, @no_status);
for my $id (@jobs) {
  my $f = status_file($id);
  my $code;
  if (open(my $fh, "<", $f)) {
    $code = <$fh>;
    close($fh);
  }
  if (!defined $code || $code !~ /^(\d+)\s*$/) {
    push @failed, $id;
    push @no_status, $id;
  } elsif ($1 != 0) {
    push @failed, $id;
  }
}
exit 0 unless @failed;

my $first_log = substitute($logfile_pattern, $failed[0]);
my $num_failed = scalar(@failed);
if (!defined $jobname || $jobstart == $jobend) {
  print STDERR "$me: $num_failed / $num_total failed, log is in $first_log\n";
} else {
  my @shown = @failed > 10 ? (@failed[0 .. 9], "...") : @failed;
  my $which = ($num_failed == 1 ? "job " : "jobs ") . join(",", @shown);
  print STDERR "$me: $num_failed / $num_total failed, log is in $all_logs"
    . " (failed: $which; see $first_log)\n";
}
if (@no_status) {
  my @shown = @no_status > 10 ? (@no_status[0 .. 9], "...") : @no_status;
  print STDERR "$me: " . (@no_status == 1 ? "job " : "jobs ") . join(",", @shown)
    . " of Slurm job $slurm_job ended without a status (killed by Slurm: time limit, memory, "
    . "scancel or node failure?); Slurm's messages are in $qdir/$tag.$no_status[0].out\n";
}
exit 1;
