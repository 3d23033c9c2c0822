#!/usr/bin/env perl
# Expands a spk2utt table ("<spk> <utt1> <utt2> ..." lines) into utt2spk
# ("<utt> <spk>"), keeping the order of the input.
use strict;
use warnings;

if (@ARGV && ($ARGV[0] eq "--help" || $ARGV[0] eq "-h")) {
  print "Usage: spk2utt_to_utt2spk.pl [<spk2utt>] > <utt2spk>\n"
      . "Reads stdin when no file is given.\n";
  exit 0;
}
if (@ARGV > 1 || (@ARGV && $ARGV[0] =~ /^-./)) {
  print STDERR "spk2utt_to_utt2spk.pl: expected at most one input file, got: @ARGV\n"
             . "Usage: spk2utt_to_utt2spk.pl [<spk2utt>] > <utt2spk>\n";
  exit 1;
}

my $name = sub { $ARGV eq "-" ? "stdin" : $ARGV };
while (my $line = <>) {
  my ($spk, @utts) = split(" ", $line);
  if (!@utts) {
    chomp $line;
    print STDERR "spk2utt_to_utt2spk.pl: " . $name->() . ":$.: expected '<speaker> <utterance> ...', got '$line'\n";
    exit 1;
  }
  print "$_ $spk\n" for @utts;
}
