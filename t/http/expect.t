# Expect: 100-continue: the gateway says "100 Continue" before it reads the body (and only
# then), the final response follows, and the Expect header is not forwarded upstream. A body
# over the limit is refused with 413 instead of 100; HTTP/1.0 gets no 100.
use strict; use warnings; use lib 't/lib'; use Test::More;
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use Sluice::Test qw(start_sluice start_mock_llm decode_json);

my $llm = start_mock_llm();
my $sluice = start_sluice(
    config => { http => { client_max_body_size => '4k' } },
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

subtest '100 Continue before the body, then the response' => sub {
    $llm->clear;
    my $c = client();
    send_bytes($c, "POST /echo/expect HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n"
                 . "Expect: 100-continue\r\n\r\n");
    my $interim = read_resp($c, 1, 2);
    is $interim->{status}, 100, '100 Continue arrives without the body being sent';
    is scalar @{ $llm->requests }, 0, 'nothing upstream yet';
    send_bytes($c, "hello world");
    my $r = read_resp($c);
    is $r->{status}, 200, 'final status';
    is $r->{json}{body}, 'hello world', 'echo';
    my $req = $llm->last_request;
    is $req->{body}, 'hello world', 'body upstream';
    ok !exists $req->{headers}{expect}, 'Expect not forwarded';
};

subtest 'chunked body with Expect' => sub {
    $llm->clear;
    my $c = client();
    send_bytes($c, "POST /echo/expect-chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                 . "Expect: 100-continue\r\n\r\n");
    is read_resp($c, 1, 2)->{status}, 100, '100 Continue';
    send_bytes($c, "4\r\nabcd\r\n0\r\n\r\n");
    my $r = read_resp($c);
    is $r->{status}, 200, 'final status';
    is $llm->last_request->{body}, 'abcd', 'body upstream';
};

subtest 'body over the limit: 413, no 100' => sub {
    $llm->clear;
    my $c = client();
    send_bytes($c, "POST /echo/big HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                 . "Expect: 100-continue\r\n\r\n");
    my $r = read_resp($c, 0, 3);
    is $r->{status}, 413, 'first response is 413';
    ok $r->{json} && $r->{json}{error_msg}, 'JSON error';
    is scalar @{ $llm->requests }, 0, 'nothing upstream';
};

subtest 'body already sent with the head: no stray 100 after the response' => sub {
    $llm->clear;
    my $c = client();
    send_bytes($c, "POST /echo/eager HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                 . "Expect: 100-continue\r\n\r\nabc");
    my $r = read_resp($c);
    $r = read_resp($c) if $r->{status} == 100;
    is $r->{status}, 200, 'final status';
    is $r->{json}{body}, 'abc', 'body';
    send_bytes($c, "GET /echo/next HTTP/1.1\r\nHost: x\r\n\r\n");
    my $next = read_resp($c);
    is $next->{status}, 200, 'next response is a 200, not a late 100';
    is $next->{json}{path}, '/echo/next', 'and the right one';
};

subtest 'HTTP/1.0 gets no 100 Continue' => sub {
    my $c = client();
    send_bytes($c, "POST /echo/ten HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
    my $first = read_resp($c, 1, 0.7);
    isnt $first->{status}, 100, 'no 100 to an HTTP/1.0 client';
    send_bytes($c, "ok") if !$first->{status};
    my $r = $first->{status} ? $first : read_resp($c, 1);
    is $r->{status}, 200, 'final status';
};

done_testing;
