# Backpressure: a 512 MiB upstream response to a client that reads slowly must not be
# buffered in the worker (its RSS stays small: the upstream transfer is paused instead);
# when the client hangs up, the upstream transfer is cancelled and the worker keeps serving.
# The same through a body_filter plugin (t/plugins-fixtures/test-passthrough.lua).
use strict; use warnings; use lib 't/lib'; use Test::More;
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use Sluice::Test qw(start_sluice start_mock_llm http_req wait_for);

my $llm = start_mock_llm();
my $up = { type => 'roundrobin', nodes => { '127.0.0.1:' . $llm->port => 1 } };
my $sluice = start_sluice(
    routes => [ { id => 'all', uri => '/*', upstream => $up },
                { id => 'filtered', uri => '/bytes/*', hosts => ['filtered.test'], priority => 10,
                  upstream => $up,
                  plugins => { 'test-passthrough' => {} } } ],
    config => { plugins => ['test-passthrough'],
                plugin_paths => [ Sluice::Test::repo_root() . '/t/plugins-fixtures' ] },
);

sub rss_kb {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/status" or return undef;
    while (<$fh>) {
        return $1 if /^VmRSS:\s+(\d+)\s+kB/;
    }
    return undef;
}

my ($worker) = $sluice->worker_pids;
ok $worker, "worker pid $worker";
is http_req($sluice, 'GET', '/echo/warm')->{status}, 200, 'warm-up request';
my $base = rss_kb($worker);
diag "worker RSS at rest: ${base} kB";

my $size = 512 * 1024 * 1024;

sub slow_reader {
    my ($path, $host) = @_;
    my $prefix = '/bytes/';
    my ($n) = $path =~ m{/bytes/(\d+)};
    $llm->clear;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $sluice->port,
                                  Proto => 'tcp', Timeout => 3) or die "connect: $@";
    syswrite $s, "GET $path HTTP/1.1\r\nHost: $host\r\n\r\n";
    my $sel = IO::Select->new($s);
    my ($got, $max_rss, $buf, $head) = (0, 0, '', '');
    my $t0 = time;
    while (time - $t0 < 4) {
        if ($sel->can_read(0.5)) {
            my $rd = sysread $s, $buf, 65536;
            last if !$rd;
            $got += $rd;
            $head .= $buf if length $head < 200;
        }
        my $rss = rss_kb($worker) // 0;
        $max_rss = $rss if $rss > $max_rss;
        sleep 0.1;
    }
    like $head, qr{\AHTTP/1\.1 200 }, 'response started';
    like $head, qr{Transfer-Encoding: chunked}i, 'chunked (body_filter path)' if $host ne 'x';
    cmp_ok $got, '>', 100_000, "client received data ($got bytes)";
    cmp_ok $got, '<', $n / 4, 'client is slow: far from the whole body';
    cmp_ok $max_rss, '<', 100 * 1024, "worker RSS peak ${max_rss} kB < 100 MB";
    cmp_ok $max_rss - $base, '<', 64 * 1024, 'grew by less than 64 MB';
    my $resp = $llm->responses;
    is scalar(grep { index($_->{path}, $prefix) == 0 } @$resp), 0,
        'upstream transfer still open (not finished or failed) while the client reads';

    close $s;
    my $cancelled = wait_for(sub {
        my ($r) = grep { index($_->{path}, $prefix) == 0 } @{ $llm->responses };
        return $r;
    }, 5);
    ok $cancelled, 'upstream transfer ended soon after the client left';
    is $cancelled && $cancelled->{outcome}, 'client_closed', 'the gateway hung up on the upstream';
    cmp_ok $cancelled ? $cancelled->{bytes} : $n, '<', $n / 2, 'long before the end of the body';
}

subtest 'slow reader: worker memory stays bounded' => sub {
    slow_reader("/bytes/$size", 'x');
};

subtest 'slow reader through a body_filter plugin: bounded too' => sub {
    slow_reader('/bytes/' . ($size / 2), 'filtered.test');   # half: less to hold if it buffers
};

subtest 'the worker keeps serving' => sub {
    my $res = http_req($sluice, 'GET', '/echo/after');
    is $res->{status}, 200, 'status';
    is_deeply [ $sluice->worker_pids ], [$worker], 'same worker';
    my $rss = rss_kb($worker) // 0;
    cmp_ok $rss, '<', 100 * 1024, "RSS after: ${rss} kB";
};

done_testing;
