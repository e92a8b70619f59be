# Streaming: an SSE response from the upstream reaches the client event by event as the
# upstream writes it (no buffering), with its Content-Type, and ends cleanly; also through a
# body_filter plugin (t/plugins-fixtures/test-passthrough.lua), the path ai-proxy takes.
use strict; use warnings; use lib 't/lib'; use Test::More;
use Time::HiRes qw(time);
use Sluice::Test qw(start_sluice start_mock_llm http_req);

my $llm = start_mock_llm();
my $up = { type => 'roundrobin', nodes => { '127.0.0.1:' . $llm->port => 1 } };
my $sluice = start_sluice(
    routes => [ { id => 'sse', uri => '/sse', upstream => $up },
                # the same stream through a body_filter plugin (the path ai-proxy takes)
                { id => 'filtered', uri => '/sse', hosts => ['filtered.test'], priority => 10,
                  upstream => $up, plugins => { 'test-passthrough' => {} } } ],
    config => { plugins => ['test-passthrough'],
                plugin_paths => [ Sluice::Test::repo_root() . '/t/plugins-fixtures' ] },
);

sub five_events {
    my ($host) = @_;
    $llm->clear;
    my $t0 = time;
    my $res = http_req($sluice, 'GET', '/sse?n=5&delay_ms=300', max_time => 10,
                       headers => { Host => $host });
    is $res->{status}, 200, 'status';
    like $res->{headers}{'content-type'} // '', qr{^text/event-stream}, 'Content-Type kept';
    ok $res->{complete}, 'stream ended cleanly';
    my $ev = $res->{events} || [];
    is scalar @$ev, 5, 'five events';
    is_deeply [ map { $_->{json}{seq} } @$ev ], [1 .. 5], 'in order'
        or diag explain [ map { $_->{data} } @$ev ];
    return if @$ev != 5;

    for my $i (1 .. 4) {
        my $gap = $ev->[$i]{t} - $ev->[$i - 1]{t};
        cmp_ok $gap, '>', 0.15, sprintf('gap %d->%d is %.3fs (> 0.15)', $i, $i + 1, $gap);
        cmp_ok $gap, '<', 0.6, sprintf('gap %d->%d is %.3fs (< 0.6)', $i, $i + 1, $gap);
    }
    cmp_ok $ev->[-1]{t} - $ev->[0]{t}, '>', 0.9, 'first event arrived long before the last';
    cmp_ok $ev->[0]{t} - $t0, '<', 0.5, 'first event arrived at once';

    # each event reached the client soon after the mock wrote it
    my @lag = map { $_->{t} - $_->{json}{t} } @$ev;
    cmp_ok((sort { $b <=> $a } @lag)[0], '<', 0.2,
        sprintf('worst upstream-to-client lag %.3fs', (sort { $b <=> $a } @lag)[0]));

    my ($resp) = grep { $_->{path} =~ m{^/sse} } @{ $llm->responses };
    is $resp->{outcome}, 'complete', 'upstream finished the stream';
    is $llm->last_request->{query}, 'n=5&delay_ms=300', 'query upstream';
}

subtest 'five events 300 ms apart arrive 300 ms apart' => sub { five_events('plain.test') };

subtest 'the same through a body_filter plugin' => sub { five_events('filtered.test') };

subtest 'large events are not held back either' => sub {
    my $res = http_req($sluice, 'GET', '/sse?n=3&delay_ms=300&size=20000', max_time => 10);
    my $ev = $res->{events} || [];
    is scalar @$ev, 3, 'three events';
    return if @$ev != 3;
    cmp_ok $ev->[2]{t} - $ev->[0]{t}, '>', 0.45, 'spread over the upstream\'s timing';
    cmp_ok length $ev->[0]{data}, '>=', 19000, 'event size kept';
};

done_testing;
