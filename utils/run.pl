#!/usr/bin/env perl
# Local job dispatcher with the interface of Kaldi's run.pl, so recipes can
# switch between this and a cluster backend (slurm.pl) by changing $cmd only.
use strict;
use warnings;
use File::Basename qw(dirname);
use File::Path qw(make_path);
use POSIX qw(strftime);

my $usage = <<'EOF';
Usage: run.pl [options] [JOB=1:N] <log-file> <command> [<arg> ...]
Runs <command> locally, once per job, through bash, with its stdout and
stderr in <log-file>.  The name JOB (any name: SPLIT=1:4 works too) is replaced
by the job number in <log-file> and in every argument.
A single <command> argument is given to bash as is, so it may hold pipes and
redirections ("sort x | uniq -c > y"); with several arguments, those containing
white space, quotes or backslashes stay one word each, and an escaped \| or \>
acts as a pipe or redirection, as with Kaldi.
e.g.: run.pl JOB=1:4 exp/log/feats.JOB.log voiceswap-feats data/split4/JOB out.JOB
Options:
  --max-jobs-run <k>   # run at most k jobs at once (default: all)
  --pick <all|failed|incomplete>
                       # failed: re-run only jobs whose log ends with a non-zero
                       # code; incomplete: also jobs never run or interrupted,
                       # i.e. every job whose log lacks "# Ended (code 0)"
  --gpu <n>, --mem <m>, --num-threads <t>, --time <t>, --config <file>
                       # accepted for compatibility with cluster backends;
                       # ignored when running locally
EOF

sub usage_error {
  my ($msg) = @_;
  print STDERR "run.pl: $msg\n" if defined $msg;
  print STDERR $usage;
  exit 1;
}

sub fail {
  print STDERR "run.pl: $_[0]\n";
  exit 1;
}

my $max_jobs_run = 0;    # 0: all jobs at once
my $pick = "all";
my ($jobname, $jobstart, $jobend);

my %takes_value = map { $_ => 1 } qw(--gpu --mem --num-threads --time --config);

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
  } elsif ($takes_value{$arg}) {
    @ARGV >= 2 or usage_error("option $arg needs a value");
    my $val = $ARGV[1];
    if ($arg eq "--gpu" && $val !~ /^\d+$/) {
      fail("invalid value '$val' for --gpu: expected a number of GPUs (0, 1, ...)");
    }
    if ($arg eq "--num-threads" && $val !~ /^[1-9]\d*$/) {
      fail("invalid value '$val' for --num-threads: expected a positive integer");
    }
    splice(@ARGV, 0, 2);
  } elsif ($arg eq "-V") {
    shift @ARGV;    # GridEngine's "export environment"; always true locally
  } elsif ($arg =~ /^-/) {
    fail("unknown option '$arg'; run 'run.pl --help' for the accepted options");
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

sub shell_word {
  my ($w) = @_;
  # Words without white space go to bash untouched, so that Kaldi's escaped
  # \| and \> still make pipes and redirections; quotes and backslashes left
  # in a word after the caller's shell are data, never meant for a second shell.
  return $w if $w =~ /^[^\s'"\\]+$/;
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

sub now_string {
  return strftime("%a %b %e %H:%M:%S %Z %Y", localtime);
}

# The last "# Ended (code N)" line of a log, or undef if the job never finished.
sub ended_code {
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
  print STDERR "run.pl: --pick $pick: running " . scalar(@jobs) . " of $num_total jobs"
    . (@jobs ? " (" . join(" ", @jobs) . ")" : "") . "\n";
}

sub run_job {
  my ($id) = @_;
  my $log = substitute($logfile_pattern, $id);
  my $cmd = command_for($id);
  my $dir = dirname($log);
  eval { make_path($dir) unless -d $dir; 1 }
    or do { print STDERR "run.pl: cannot create log directory '$dir': $@"; return 1; };
  my $fh;
  unless (open($fh, ">", $log)) {
    print STDERR "run.pl: cannot write log file '$log': $!\n";
    return 1;
  }
  my $start = time;
  print $fh "# $cmd\n# Started at " . now_string() . "\n#\n";
  close($fh);

  my $pid = fork();
  defined $pid or do { print STDERR "run.pl: fork failed: $!\n"; return 1; };
  if ($pid == 0) {
    # Jobs share no stdin: several readers of one terminal or pipe would steal
    # each other's input.
    open(STDIN, "<", "/dev/null") or die "run.pl: /dev/null: $!\n";
    open(STDOUT, ">>", $log) or die "run.pl: cannot append to '$log': $!\n";
    open(STDERR, ">&", \*STDOUT) or die "run.pl: cannot redirect stderr: $!\n";
    exec("bash", "-c", $cmd) or die "run.pl: cannot run bash: $!\n";
  }
  waitpid($pid, 0);
  my $status = $?;
  my $code = $status >> 8;
  my $signal = $status & 127;
  my $how = $signal ? "code $code; signal $signal" : "code $code";

  if (open($fh, ">>", $log)) {
    print $fh "# Accounting: time=" . (time - $start) . " threads=1\n";
    print $fh "# Ended ($how) at " . now_string() . "\n";
    close($fh);
  } else {
    print STDERR "run.pl: cannot append to log file '$log': $!\n";
    return 1;
  }
  return $status == 0 ? 0 : 1;
}

my $limit = $max_jobs_run > 0 ? $max_jobs_run : scalar(@jobs);
my %running;    # pid -> job id
my @failed;

sub reap_one {
  my $pid = waitpid(-1, 0);
  return if $pid <= 0;
  my $id = delete $running{$pid};
  return unless defined $id;
  push @failed, $id if $? != 0;
}

for my $id (@jobs) {
  reap_one() while scalar(keys %running) >= $limit;
  my $pid = fork();
  defined $pid or fail("fork failed: $!");
  if ($pid == 0) {
    exit(run_job($id));
  }
  $running{$pid} = $id;
}
reap_one() while %running;

exit 0 unless @failed;

@failed = sort { $a <=> $b } @failed;
my $first_log = substitute($logfile_pattern, $failed[0]);
my $num_failed = scalar(@failed);
if (!defined $jobname || $jobstart == $jobend) {
  print STDERR "run.pl: $num_failed / $num_total failed, log is in $first_log\n";
} else {
  (my $all_logs = $logfile_pattern) =~ s/\Q$jobname\E/*/g;
  my @shown = @failed > 10 ? (@failed[0 .. 9], "...") : @failed;
  my $which = ($num_failed == 1 ? "job " : "jobs ") . join(",", @shown);
  print STDERR "run.pl: $num_failed / $num_total failed, log is in $all_logs"
    . " (failed: $which; see $first_log)\n";
}
exit 1;
