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

sub client {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $sluice->port,
                                  Proto => 'tcp', Timeout => 3) or die "connect: $@";
    binmode $s;
    return { sock => $s, buf => '' };
}

sub fill {
    my ($c, $deadline) = @_;
    my $left = $deadline - time;
    return 0 if $left <= 0 || !IO::Select->new($c->{sock})->can_read($left);
    my $n = sysread($c->{sock}, $c->{buf}, 65536, length $c->{buf});
    return $n ? $n : 0;
}

# reads one response; $head_only for HEAD
sub read_resp {
    my ($c, $head_only, $timeout) = @_;
    my $deadline = time + ($timeout // 5);
    my $end;
    while (($end = index $c->{buf}, "\r\n\r\n") < 0) {
        fill($c, $deadline) or return { status => 0, error => 'no head', raw => $c->{buf} };
    }
    my $head = substr($c->{buf}, 0, $end + 4, '');
    my ($version, $status) = $head =~ m{\AHTTP/(1\.[01]) (\d{3})};
    my %h;
    for my $line (split /\r\n/, $head) {
        my ($k, $v) = $line =~ /\A([^:]+):\s*(.*)\z/ or next;
        $h{lc $k} = $v;
    }
    my $r = { status => $status, version => $version, headers => \%h, body => '' };
    return $r if $head_only || $status == 204 || $status == 304;
    if (($h{'transfer-encoding'} // '') =~ /chunked/) {
        while (1) {
            until ($c->{buf} =~ /\r\n/) { fill($c, $deadline) or return $r }
            $c->{buf} =~ s/\A([0-9a-fA-F]+)[^\r\n]*\r\n// or return $r;
            my $size = hex $1;
            if ($size == 0) {
                until ($c->{buf} =~ /\A(?:[^\r\n]+\r\n)*\r\n/) { fill($c, $deadline) or return $r }
                $c->{buf} =~ s/\A(?:[^\r\n]+\r\n)*\r\n//;
                last;
            }
            while (length $c->{buf} < $size + 2) { fill($c, $deadline) or return $r }
            $r->{body} .= substr($c->{buf}, 0, $size + 2, '');
            chop $r->{body}; chop $r->{body};
        }
    }
    elsif (defined $h{'content-length'}) {
        while (length $c->{buf} < $h{'content-length'}) { fill($c, $deadline) or return $r }
        $r->{body} = substr($c->{buf}, 0, $h{'content-length'}, '');
    }
    else {
        1 while fill($c, $deadline);
        $r->{body} = $c->{buf};
        $c->{buf} = '';
    }
    $r->{json} = eval { decode_json($r->{body}) };
    return $r;
}

sub send_bytes { my ($c, $b) = @_; syswrite($c->{sock}, $b) == length $b or die "write: $!" }

# true when the server closes within $wait seconds (and sends nothing more)
sub closed_by_server {
    my ($c, $wait) = @_;
    my $deadline = time + $wait;
    my $before = length $c->{buf};
    while (time < $deadline) {
        my $left = $deadline - time;
        return 0 if !IO::Select->new($c->{sock})->can_read($left);
        my $n = sysread($c->{sock}, $c->{buf}, 65536, length $c->{buf});
        return length $c->{buf} == $before if !$n;
    }
    return 0;
}

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
    my $cut;
    local $SIG{PIPE} = 'IGNORE';
    for my $byte (split //, $head) {
        if (IO::Select->new($c->{sock})->can_read(0)) {
            $cut = time - $t0;
            last;
        }
        last if !defined syswrite($c->{sock}, $byte);
        sleep 0.1;
        last if time - $t0 > 2.6;
    }
    $cut //= (wait_close($c, 0.5, time))[0] ? time - $t0 : undef;
    ok defined $cut, 'the gateway ended it before the head was complete';
    cmp_ok $cut // 99, '<=', 2.2, 'within about the header timeout';
    is scalar @{ $llm->requests }, 0, 'nothing upstream';
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
