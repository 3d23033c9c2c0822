#!/usr/bin/env perl
# Keeps the lines of a table whose key is listed in an id list (or, with
# --exclude, drops them), in the table's own order.
use strict;
use warnings;

my $usage = <<'USAGE';
Usage: filter_scp.pl [--exclude] [-f <n>] <id-list> [<in.scp>] > <out.scp>
Prints the lines of <in.scp> (default: stdin) whose n-th field (default 1) is
the first field of some line of <id-list>; with --exclude, the other lines.
e.g.: filter_scp.pl data/dev/utt2spk data/all/wav.scp > data/dev/wav.scp
      filter_scp.pl -f 2 recordings.list data/all/segments
USAGE

sub fail {
  print STDERR "filter_scp.pl: $_[0]\n";
  exit 1;
}

my $exclude = 0;
my $field = 1;
while (@ARGV && $ARGV[0] =~ /^-./) {
  my $opt = shift @ARGV;
  if ($opt eq "--exclude") {
    $exclude = 1;
  } elsif ($opt eq "-f") {
    @ARGV or fail("option -f needs a field number");
    $field = shift @ARGV;
    $field =~ /^[1-9]\d*$/ or fail("-f '$field': the field number must be a positive integer (fields count from 1)");
  } elsif ($opt eq "--help" || $opt eq "-h") {
    print $usage;
    exit 0;
  } else {
    print STDERR "filter_scp.pl: unknown option '$opt'\n$usage";
    exit 1;
  }
}
(@ARGV == 1 || @ARGV == 2) or do {
  print STDERR "filter_scp.pl: expected <id-list> [<in.scp>], got " . scalar(@ARGV) . " arguments\n$usage";
  exit 1;
};
my ($idlist, $in) = @ARGV;

my %keep;
open(my $ids, "<", $idlist) or fail("cannot read id list '$idlist': $!");
while (my $line = <$ids>) {
  my ($id) = split(" ", $line);
  defined $id or fail("$idlist:$.: empty line in id list: remove it");
  $keep{$id} = 1;
}
close($ids);

my $fh;
if (!defined $in || $in eq "-") {
  ($fh, $in) = (\*STDIN, "stdin");
} else {
  open($fh, "<", $in) or fail("cannot read input '$in': $!");
}
while (my $line = <$fh>) {
  my @f = split(" ", $line);
  @f >= $field or fail("$in:$.: has " . scalar(@f) . " fields, fewer than the $field filtered on (-f $field)");
  print $line if ($keep{$f[$field - 1]} ? !$exclude : $exclude);
}
