#!/usr/bin/perl
# Writes a small MMDB file for the enrichment tests (no licensed database is committed).
# Usage: mmdb.pl OUT.mmdb DATABASE_TYPE < records
# Each stdin line: CIDR <tab> key=value[;key=value...]; keys "country" and "registered_country"
# become {iso_code => value} maps (GeoLite2 shape), numeric keys autonomous_system_number and
# geoname_id are uint32, everything else a UTF-8 string (IPinfo Lite's flat shape).
use strict;
use warnings;
use MaxMind::DB::Writer::Tree;

my ($out, $type) = @ARGV;
die "usage: mmdb.pl OUT DATABASE_TYPE < records\n" unless defined $type;
my %types = (
    country                  => 'map',
    registered_country       => 'map',
    iso_code                 => 'utf8_string',
    autonomous_system_number => 'uint32',
    geoname_id               => 'uint32',
);
my $tree = MaxMind::DB::Writer::Tree->new(
    ip_version               => 6,
    record_size              => 24,
    database_type            => $type,
    languages                => ['en'],
    description              => { en => 'SentryPeer test database' },
    remove_reserved_networks => 0,
    map_key_type_callback    => sub { $types{ $_[0] } // 'utf8_string' },
);
while (my $line = <STDIN>) {
    chomp $line;
    next if $line =~ /^\s*(#|$)/;
    my ($cidr, $fields) = split /\t/, $line, 2;
    my %data;
    for my $pair (split /;/, $fields) {
        my ($key, $value) = split /=/, $pair, 2;
        if ($key eq 'country' || $key eq 'registered_country') {
            $data{$key} = { iso_code => $value };
        } else {
            $data{$key} = $value;
        }
    }
    $tree->insert_network($cidr, \%data);
}
open my $fh, '>:raw', "$out.tmp" or die "cannot write $out.tmp: $!\n";
$tree->write_tree($fh);
close $fh or die "cannot close $out.tmp: $!\n";
rename "$out.tmp", $out or die "cannot rename to $out: $!\n";
