#!/usr/bin/env perl
# Inverts an utt2spk table ("<utt> <spk>" lines) into spk2utt
# ("<spk> <utt1> <utt2> ..."), speakers in order of first appearance.
use strict;
use warnings;

if (@ARGV && ($ARGV[0] eq "--help" || $ARGV[0] eq "-h")) {
  print "Usage: utt2spk_to_spk2utt.pl [<utt2spk>] > <spk2utt>\n"
      . "Reads stdin when no file is given.\n";
  exit 0;
}
if (@ARGV > 1 || (@ARGV && $ARGV[0] =~ /^-./)) {
  print STDERR "utt2spk_to_spk2utt.pl: expected at most one input file, got: @ARGV\n"
             . "Usage: utt2spk_to_spk2utt.pl [<utt2spk>] > <spk2utt>\n";
  exit 1;
}

my (@speakers, %utts);
my $name = sub { $ARGV eq "-" ? "stdin" : $ARGV };
while (my $line = <>) {
  my @f = split(" ", $line);
  if (@f != 2) {
    chomp $line;
    print STDERR "utt2spk_to_spk2utt.pl: " . $name->() . ":$.: expected '<utterance> <speaker>', got '$line'\n";
    exit 1;
  }
  my ($utt, $spk) = @f;
  push @speakers, $spk unless exists $utts{$spk};
  push @{$utts{$spk}}, $utt;
}
print "$_ @{$utts{$_}}\n" for @speakers;
