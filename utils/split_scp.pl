#!/usr/bin/env perl
# Splits a Kaldi-style table (scp, utt2spk, text, ...) into contiguous parts of
# near-equal size, one per parallel job.
use strict;
use warnings;

my $usage = <<'EOF';
Usage: split_scp.pl [--utt2spk <utt2spk>] <in.scp> <out1.scp> ... <outN.scp>
   or: split_scp.pl [--utt2spk <utt2spk>] -j <N> <k> <in.scp> [<out.scp>]
Splits the lines of <in.scp> into N contiguous parts, as equal in size as
possible (the first parts get the extra lines).  With --utt2spk, all of a
speaker's lines go to the same part and parts are balanced by line count;
lines are then grouped by speaker, speakers in order of first appearance.
With -j N k, only part k (counting from 0) is written, to <out.scp> or stdout.
An output named "-" is stdout.
EOF

sub fail {
  print STDERR "split_scp.pl: $_[0]\n";
  exit 1;
}

my ($utt2spk_file, $num_jobs, $job_id);
while (@ARGV && $ARGV[0] =~ /^-./) {
  my $opt = shift @ARGV;
  if ($opt eq "--help" || $opt eq "-h") {
    print $usage;
    exit 0;
  } elsif ($opt =~ /^--utt2spk=(.+)$/) {    # Kaldi's spelling
    $utt2spk_file = $1;
  } elsif ($opt eq "--utt2spk") {
    @ARGV or fail("option --utt2spk needs a file name");
    $utt2spk_file = shift @ARGV;
  } elsif ($opt eq "-j") {
    @ARGV >= 2 or fail("option -j needs two values: <number-of-jobs> <job-id>");
    ($num_jobs, $job_id) = splice(@ARGV, 0, 2);
    $num_jobs =~ /^[1-9]\d*$/ or fail("-j $num_jobs $job_id: number of jobs must be a positive integer");
    ($job_id =~ /^\d+$/ && $job_id < $num_jobs)
      or fail("-j $num_jobs $job_id: job id must be in 0..".($num_jobs - 1)." (it counts from 0)");
  } else {
    print STDERR "split_scp.pl: unknown option '$opt'\n$usage";
    exit 1;
  }
}

my ($in, @outputs);
if (defined $num_jobs) {
  (@ARGV == 1 || @ARGV == 2) or do { print STDERR "split_scp.pl: with -j give <in.scp> [<out.scp>]\n$usage"; exit 1 };
  $in = $ARGV[0];
  @outputs = ($ARGV[1] // "-");
} else {
  @ARGV >= 2 or do { print STDERR "split_scp.pl: need an input and at least one output\n$usage"; exit 1 };
  ($in, @outputs) = @ARGV;
  my %seen;
  for my $o (@outputs) {
    next if $o eq "-";
    $seen{$o}++ and fail("output '$o' is named twice: each part needs its own file");
    $o eq $in and fail("output '$o' is also the input: write the parts elsewhere");
  }
  $num_jobs = @outputs;
}

my $in_fh;
if ($in eq "-") {
  $in_fh = \*STDIN;
} else {
  open($in_fh, "<", $in) or fail("cannot read input '$in': $!");
}
my @lines;
while (my $line = <$in_fh>) {
  $line =~ /\S/ or fail("$in:$.: empty line: remove it (tables have one 'key value...' entry per line)");
  $line .= "\n" unless $line =~ /\n$/;
  push @lines, $line;
}
close($in_fh);
@lines or fail("input '$in' is empty: nothing to split");

# Each group is a list of lines that must stay in one part.
my @groups;
my $what;
if (defined $utt2spk_file) {
  my %utt2spk;
  open(my $fh, "<", $utt2spk_file) or fail("cannot read utt2spk file '$utt2spk_file': $!");
  while (my $line = <$fh>) {
    my @f = split(" ", $line);
    @f == 2 or fail("$utt2spk_file:$.: expected '<utterance> <speaker>', got: " . ($line =~ s/\n$//r));
    $utt2spk{$f[0]} = $f[1];
  }
  close($fh);
  my (%group_of, @speakers);
  my $n = 0;
  for my $line (@lines) {
    $n++;
    my ($utt) = split(" ", $line);
    my $spk = $utt2spk{$utt};
    defined $spk or fail("$in:$n: utterance '$utt' is not in '$utt2spk_file': "
                         . "the data directory is inconsistent; fix it with utils/fix_data_dir.sh");
    if (!exists $group_of{$spk}) {
      push @speakers, $spk;
      $group_of{$spk} = [];
    }
    push @{$group_of{$spk}}, $line;
  }
  @groups = map { $group_of{$_} } @speakers;
  $what = "speakers";
} else {
  @groups = map { [$_] } @lines;
  $what = "utterances";
}

my $num_groups = @groups;
if ($num_groups < $num_jobs) {
  my $hint = $what eq "speakers" ? " or split per utterance (split_data.sh --per-utt)" : "";
  fail("$in: cannot split $num_groups $what into $num_jobs parts: use fewer jobs (--nj)$hint");
}

my @cum = (0);
push @cum, $cum[-1] + scalar(@{$_}) for @groups;
my $total = $cum[-1];
my @ends;
if (!defined $utt2spk_file) {
  # Kaldi's layout: the first (total mod N) parts get one line more.
  my $base = int($num_groups / $num_jobs);
  my $extra = $num_groups % $num_jobs;
  my $end = 0;
  for my $k (0 .. $num_jobs - 2) {
    $end += $base + ($k < $extra ? 1 : 0);
    push @ends, $end;
  }
} else {
  # Speakers differ in size, so contiguous speaker ranges cannot all be equal.
  # First find the smallest possible size of the largest part; then, part by
  # part, end each one as close as possible to an equal share of what is left,
  # among the ends that keep that bound reachable for the remaining parts.
  my $parts_needed = sub {    # greedy packing under a cap: fewest parts
    my ($cap) = @_;
    my ($parts, $start) = (0, 0);
    while ($start < $num_groups) {
      my $e = $start + 1;
      $e++ while $e < $num_groups && $cum[$e + 1] - $cum[$start] <= $cap;
      ($parts, $start) = ($parts + 1, $e);
    }
    return $parts;
  };
  my $largest = 0;
  for (@groups) { $largest = @{$_} if @{$_} > $largest }
  my ($lo, $hi) = ($largest, $total);
  while ($lo < $hi) {
    my $mid = int(($lo + $hi) / 2);
    if ($parts_needed->($mid) <= $num_jobs) { $hi = $mid } else { $lo = $mid + 1 }
  }
  my $cap = $lo;
  # $need[$i]: fewest parts that can hold groups $i.. under $cap.
  my @need = (0) x ($num_groups + 1);
  my $next = $num_groups;
  for (my $i = $num_groups - 1; $i >= 0; $i--) {
    $next-- while $cum[$next] - $cum[$i] > $cap;
    $need[$i] = 1 + $need[$next];
  }
  my $start = 0;
  for my $k (0 .. $num_jobs - 2) {
    my $left = $num_jobs - 1 - $k;    # parts after this one
    my $target = $cum[$start] + ($total - $cum[$start]) / ($num_jobs - $k);
    my $best;
    for my $e ($start + 1 .. $num_groups - $left) {
      last if $cum[$e] - $cum[$start] > $cap;
      next if $need[$e] > $left;
      $best = $e if !defined $best || abs($cum[$e] - $target) < abs($cum[$best] - $target);
    }
    push @ends, $best;
    $start = $best;
  }
}
push @ends, $num_groups;

my $start = 0;
for my $k (0 .. $num_jobs - 1) {
  my $end = $ends[$k];
  my @part = map { @{$groups[$_]} } $start .. $end - 1;
  $start = $end;
  my $out;
  if (defined $job_id) {    # -j: only our own part
    next unless $k == $job_id;
    $out = $outputs[0];
  } else {
    $out = $outputs[$k];
  }
  my $fh;
  if ($out eq "-") {
    $fh = \*STDOUT;
  } else {
    open($fh, ">", $out) or fail("cannot write output '$out': $!");
  }
  print $fh @part;
  if ($out ne "-") {
    close($fh) or fail("cannot write output '$out': $!");
  }
}
