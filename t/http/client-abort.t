# A client that hangs up mid-request makes the gateway cancel the upstream transfer: while
# streaming (SSE, with and without a body_filter plugin), while waiting for the upstream's
# response head, and during a large body. The worker keeps serving afterwards.
use strict; use warnings; use lib 't/lib'; use Test::More;
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use Sluice::Test qw(start_sluice start_mock_llm http_req wait_for);

my $llm = start_mock_llm();
my $up = { type => 'roundrobin', nodes => { '127.0.0.1:' . $llm->port => 1 } };
my $sluice = start_sluice(
    routes => [ { id => 'all', uri => '/*', upstream => $up },
                { id => 'filtered', uri => '/*', hosts => ['filtered.test'], priority => 10,
                  upstream => $up, plugins => { 'test-passthrough' => {} } } ],
    config => { plugins => ['test-passthrough'],
                plugin_paths => [ Sluice::Test::repo_root() . '/t/plugins-fixtures' ] },
);

sub open_req {
    my ($path, $host) = @_;
    $host //= 'x';
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $sluice->port,
                                  Proto => 'tcp', Timeout => 3) or die "connect: $@";
    syswrite $s, "GET $path HTTP/1.1\r\nHost: $host\r\n\r\n";
    return $s;
}

# reads until $re matches what was read or $max seconds pass
sub read_until {
    my ($s, $re, $max) = @_;
    my ($buf, $deadline) = ('', time + $max);
    my $sel = IO::Select->new($s);
    while ($buf !~ $re && time < $deadline) {
        last if !$sel->can_read($deadline - time);
        sysread($s, $buf, 65536, length $buf) or last;
    }
    return $buf;
}

sub outcome_of {
    my ($prefix, $wait) = @_;
    return wait_for(sub {
        my ($r) = grep { index($_->{path}, $prefix) == 0 } @{ $llm->responses };
        return $r;
    }, $wait);
}

subtest 'hang up during an SSE stream' => sub {
    $llm->clear;
    my $s = open_req('/sse?n=20&delay_ms=200');
    my $got = read_until($s, qr/"seq":2\b/, 3);
    like $got, qr/"seq":2\b/, 'two events received';
    my $t0 = time;
    close $s;
    my $r = outcome_of('/sse', 3);
    ok $r, 'upstream stream ended';
    is $r && $r->{outcome}, 'client_closed', 'cancelled by the gateway';
    cmp_ok $r ? $r->{events} : 99, '<', 10, 'well before its 20 events';
    cmp_ok time - $t0, '<', 2, 'within a couple of events';
};

subtest 'hang up during an SSE stream through a body_filter plugin' => sub {
    $llm->clear;
    my $s = open_req('/sse?n=20&delay_ms=200', 'filtered.test');
    my $got = read_until($s, qr/"seq":2\b/, 3);
    like $got, qr/"seq":2\b/, 'two events received';
    close $s;
    my $r = outcome_of('/sse', 3);
    ok $r, 'upstream stream ended';
    is $r && $r->{outcome}, 'client_closed', 'cancelled by the gateway';
    cmp_ok $r ? $r->{events} : 99, '<', 10, 'well before its 20 events';
};

subtest 'hang up while the upstream has not answered yet' => sub {
    $llm->clear;
    my $s = open_req('/echo/wait?mock_delay_ms=3000');
    ok wait_for(sub { @{ $llm->requests } >= 1 }, 3), 'request reached the upstream';
    my $t0 = time;
    close $s;
    my $r = outcome_of('/echo/wait', 2.5);
    ok $r, 'upstream request ended before its 3 s delay';
    is $r && $r->{outcome}, 'client_closed', 'cancelled by the gateway';
    is $r && $r->{status}, 0, 'before the response head';
};

subtest 'hang up during a large body' => sub {
    $llm->clear;
    my $s = open_req('/bytes/268435456');
    my $got = read_until($s, qr/(?:x{50000}){2}/, 3);
    like $got, qr{\AHTTP/1\.1 200 }, 'response started';
    close $s;
    my $r = outcome_of('/bytes/', 3);
    ok $r, 'upstream transfer ended';
    is $r && $r->{outcome}, 'client_closed', 'cancelled by the gateway';
    cmp_ok $r ? $r->{bytes} : 1e12, '<', 268435456 / 2, 'far from the whole body';
};

subtest 'the worker keeps serving' => sub {
    my $res = http_req($sluice, 'GET', '/sse?n=2');
    is $res->{status}, 200, 'status';
    is scalar @{ $res->{events} || [] }, 2, 'a full stream';
    my $log = $sluice->error_log;
    unlike $log, qr/\[(?:crit|alert|emerg)\]|assert|segfault|signal 11/i, 'no crash in error.log';
};

done_testing;
