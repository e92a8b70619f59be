# Downstream timeouts from the node config (all 1 s here): client_header_timeout (partial or
# trickled head, and a connection that never sends anything), keepalive_timeout (idle
# connection between requests), client_body_timeout (body stalls), send_timeout (a client
# that stops reading: the connection is closed and the upstream transfer cancelled). Each
# ends in 408 JSON or a close within about a second; nothing half-received goes upstream.
use strict; use warnings; use lib 't/lib'; use Test::More;
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use Sluice::Test qw(start_sluice start_mock_llm decode_json wait_for);

my $llm = start_mock_llm();
my $sluice = start_sluice(
    config => { http => { client_header_timeout => 1, keepalive_timeout => 1,
                          client_body_timeout => 1, send_timeout => 1 } },
    routes => [ { id => 'all', uri => '/*',
                  upstream => { type => 'roundrobin',
                                nodes => { '127.0.0.1:' . $llm->port => 1 } } } ],
);

use Sluice::RawClient qw(fill read_resp send_bytes closed_by_server);

sub client { Sluice::RawClient::connect_to($sluice->port) }

# Waits (at most $max s) for the server to end the connection; returns (seconds, bytes sent
# to us meanwhile), seconds undef when it did not.
sub wait_close {
    my ($c, $max, $t0) = @_;
    my $deadline = $t0 + $max;
    while (time < $deadline) {
        last if !IO::Select->new($c->{sock})->can_read($deadline - time);
        my $n = sysread($c->{sock}, $c->{buf}, 65536, length $c->{buf});
        return (time - $t0, $c->{buf}) if !$n;
    }
    return (undef, $c->{buf});
}

# Sends $head a byte every 0.1 s until the server answers or closes, or $max s after $t0;
# returns the seconds from $t0 to when the server ended it, undef when it did not.
sub trickle {
    my ($c, $head, $t0, $max) = @_;
    local $SIG{PIPE} = 'IGNORE';
    for my $byte (split //, $head) {
        return time - $t0 if IO::Select->new($c->{sock})->can_read(0);
        last if !defined syswrite($c->{sock}, $byte);
        sleep 0.1;
        last if time - $t0 > $max;
    }
    return (wait_close($c, 0.5, time))[0] ? time - $t0 : undef;
}

sub ended_with_408_or_close {
    my ($got) = @_;
    return 1 if $got eq '';
    return $got =~ m{\AHTTP/1\.1 408 } && $got =~ /"error_msg"/;
}

subtest 'partial head: 408 or close after client_header_timeout' => sub {
    $llm->clear;
    my $c = client();
    my $t0 = time;
    send_bytes($c, "GET /echo/partial HTTP/1.1\r\nHost: x\r\n");
    my ($took, $got) = wait_close($c, 4, $t0);
    ok defined $took, 'connection ended';
    cmp_ok $took // 99, '>=', 0.8, 'not before the timeout';
    cmp_ok $took // 99, '<=', 2.2, 'about one second';
    ok ended_with_408_or_close($got), '408 JSON or a plain close' or diag $got;
    is scalar @{ $llm->requests }, 0, 'nothing upstream';
};

subtest 'connection that sends nothing is closed' => sub {
    my $c = client();
    my $t0 = time;
    my ($took, $got) = wait_close($c, 4, $t0);
    ok defined $took, 'connection ended';
    cmp_ok $took // 99, '<=', 2.2, 'about one second';
    ok ended_with_408_or_close($got), '408 JSON or a plain close' or diag $got;
};

subtest 'head trickled byte by byte is cut off (slowloris)' => sub {
    $llm->clear;
    my $c = client();
    my $t0 = time;
    my $head = "GET /echo/slow HTTP/1.1\r\nHost: x\r\nX-A: " . ('a' x 20) . "\r\n\r\n";
    my $cut = trickle($c, $head, $t0, 2.6);
    ok defined $cut, 'the gateway ended it before the head was complete';
    cmp_ok $cut // 99, '<=', 2.2, 'within about the header timeout';
    is scalar @{ $llm->requests }, 0, 'nothing upstream';
};

subtest 'the next head trickled on a kept-alive connection is cut off too' => sub {
    # each byte comes well within the 1 s read timeout: only the head's own deadline, started
    # by its first bytes, ends it
    $llm->clear;
    my $c = client();
    send_bytes($c, "GET /echo/first HTTP/1.1\r\nHost: x\r\n\r\n");
    is read_resp($c)->{status}, 200, 'first request served';
    my $t0 = time;
    my $head = "GET /echo/slow2 HTTP/1.1\r\nHost: x\r\nX-A: " . ('a' x 30) . "\r\n\r\n";
    my $cut = trickle($c, $head, $t0, 3.5);
    ok defined $cut, 'the gateway ended it before the head was complete';
    cmp_ok $cut // 99, '<=', 2.2, 'within about the header timeout';
    is scalar(grep { ($_->{path} // '') eq '/echo/slow2' } @{ $llm->requests }), 0,
        'the trickled request went nowhere';
};

subtest 'a request served longer than every client timeout is not cut' => sub {
    # the read timeout from before the request runs out while the upstream takes 2.5 s:
    # reading goes on, the response arrives whole, and the connection is kept
    my $c = client();
    send_bytes($c, "GET /echo/first HTTP/1.1\r\nHost: x\r\n\r\n");
    is read_resp($c)->{status}, 200, 'first request served';
    for my $n (1 .. 2) {
        my $t0 = time;
        send_bytes($c, "GET /echo/slow-upstream?mock_delay_ms=2500 HTTP/1.1\r\nHost: x\r\n\r\n");
        my $r = read_resp($c);
        is $r->{status}, 200, "slow request $n: 200";
        cmp_ok time - $t0, '>=', 2.4, "slow request $n: it did take the upstream's time";
    }
    send_bytes($c, "GET /echo/after HTTP/1.1\r\nHost: x\r\n\r\n");
    is read_resp($c)->{status}, 200, 'the same connection serves the next request';
};

subtest 'a client that leaves during a slow request is seen (upstream cancelled)' => sub {
    $llm->clear;
    my $c = client();
    send_bytes($c, "GET /echo/left?mock_delay_ms=3000 HTTP/1.1\r\nHost: x\r\n\r\n");
    sleep 1.5;                      # past the read timeout: reading must still be on
    close $c->{sock};
    ok $sluice->wait_error_log(qr/closed the connection, cancelling the upstream transfer/, 3),
        'the gateway saw the client leave and cancelled the upstream';
};

subtest 'idle keep-alive connection closed after keepalive_timeout' => sub {
    my $c = client();
    send_bytes($c, "GET /echo/ka HTTP/1.1\r\nHost: x\r\n\r\n");
    my $r = read_resp($c);
    is $r->{status}, 200, 'first request served';
    my $t0 = time;
    my ($took, $got) = wait_close($c, 4, $t0);
    ok defined $took, 'connection closed';
    cmp_ok $took // 99, '>=', 0.7, 'not at once';
    cmp_ok $took // 99, '<=', 2.2, 'about one second';
    is $got, '', 'nothing sent on close';
};

subtest 'keep-alive connection used within the timeout stays open' => sub {
    my $c = client();
    my $ok = 0;
    for my $i (1 .. 3) {
        send_bytes($c, "GET /echo/ka$i HTTP/1.1\r\nHost: x\r\n\r\n");
        $ok++ if (read_resp($c)->{status} // 0) == 200;
        sleep 0.6;
    }
    is $ok, 3, 'three requests 0.6 s apart on one connection (1.8 s in all)';
};

subtest 'stalled body: 408 or close after client_body_timeout' => sub {
    $llm->clear;
    my $c = client();
    send_bytes($c, "POST /echo/body HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
    my $t0 = time;
    my ($took, $got) = wait_close($c, 4, $t0);
    ok defined $took, 'connection ended';
    cmp_ok $took // 99, '>=', 0.8, 'not before the timeout';
    cmp_ok $took // 99, '<=', 2.2, 'about one second';
    ok ended_with_408_or_close($got), '408 JSON or a plain close' or diag $got;
    is scalar @{ $llm->requests }, 0, 'partial body not sent upstream';
};

subtest 'slow but steady body is not cut off' => sub {
    $llm->clear;
    my $c = client();
    send_bytes($c, "POST /echo/steady HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n");
    for my $ch (split //, 'abcd') {
        sleep 0.45;
        send_bytes($c, $ch);
    }
    my $r = read_resp($c);
    is $r->{status}, 200, '1.8 s body with 0.45 s gaps accepted';
    is $llm->last_request->{body}, 'abcd', 'body upstream';
};

subtest 'client that stops reading: send_timeout ends it, upstream cancelled' => sub {
    $llm->clear;
    my $c = client();
    setsockopt($c->{sock}, Socket::SOL_SOCKET(), Socket::SO_RCVBUF(), 16384);
    send_bytes($c, "GET /bytes/268435456 HTTP/1.1\r\nHost: x\r\n\r\n");
    my $t0 = time;
    my $r = wait_for(sub {
        my ($o) = grep { $_->{path} =~ m{^/bytes/} } @{ $llm->responses };
        return $o;
    }, 6);
    my $took = time - $t0;
    ok $r, sprintf('upstream transfer ended (%.2fs)', $took);
    is $r && $r->{outcome}, 'client_closed', 'cancelled by the gateway';
    cmp_ok $took, '<', 4, 'within a few seconds of the client stalling';
    my $res = read_resp(client_get('/echo/after-stall'));
    is $res->{status}, 200, 'gateway still serves';
};

sub client_get {
    my ($path) = @_;
    my $c = client();
    send_bytes($c, "GET $path HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    return $c;
}

done_testing;
