# Chunked request bodies: de-chunked before they go upstream (extensions and trailers
# dropped, hex in either case, chunks arriving slowly, an empty chunked body), and the
# connection stays usable after a chunked request. Chunked upstream responses reach the
# client intact.
use strict; use warnings; use lib 't/lib'; use Test::More;
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use Sluice::Test qw(start_sluice start_mock_llm decode_json raw_http http_req);

my $llm = start_mock_llm();
my $sluice = start_sluice(routes => [
    { id => 'all', uri => '/*',
      upstream => { type => 'roundrobin', nodes => { '127.0.0.1:' . $llm->port => 1 } } },
]);

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

my $head = "POST /echo/chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
         . "Content-Type: text/plain\r\n\r\n";

sub post_chunked {
    my ($body_bytes, $pieces) = @_;
    $llm->clear;
    my $c = client();
    if ($pieces) {
        send_bytes($c, $head);
        for my $p (@$body_bytes) {
            sleep 0.05;
            send_bytes($c, $p);
        }
    }
    else {
        send_bytes($c, $head . $body_bytes);
    }
    return (read_resp($c), $llm->last_request, $c);
}

subtest 'simple chunked body' => sub {
    my ($r, $req) = post_chunked("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    is $r->{status}, 200, 'status';
    is $r->{json}{body}, 'hello world', 'client sees the echo';
    is $req->{body}, 'hello world', 'de-chunked upstream';
    ok !defined $req->{headers}{'transfer-encoding'}
        || $req->{headers}{'transfer-encoding'} eq 'chunked', 'no odd Transfer-Encoding upstream';
    is $req->{headers}{'content-type'}, 'text/plain', 'other headers kept';
};

subtest 'chunk extensions and upper-case hex' => sub {
    my ($r, $req) = post_chunked("A;name=value\r\n0123456789\r\n1;x=\"q\"\r\n!\r\n0;end\r\n\r\n");
    is $r->{status}, 200, 'status';
    is $req->{body}, '0123456789!', 'extensions dropped, data intact';
};

subtest 'trailers are consumed' => sub {
    my ($r, $req, $c) = post_chunked("3\r\nabc\r\n0\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n");
    is $r->{status}, 200, 'status';
    is $req->{body}, 'abc', 'body';
    send_bytes($c, "GET /echo/after-trailers HTTP/1.1\r\nHost: x\r\n\r\n");
    my $next = read_resp($c);
    is $next->{json}{path}, '/echo/after-trailers', 'trailer bytes were not taken as a request';
};

subtest 'chunks arriving slowly, split inside size lines and data' => sub {
    my ($r, $req) = post_chunked(["1", "0\r\n0123", "456789abcdef\r", "\n", "3\r\nxyz", "\r\n0\r", "\n\r\n"], 1);
    is $r->{status}, 200, 'status';
    is $req->{body}, '0123456789abcdefxyz', 'body assembled';
};

subtest 'empty chunked body' => sub {
    my ($r, $req) = post_chunked("0\r\n\r\n");
    is $r->{status}, 200, 'status';
    is $req->{body}, '', 'empty body upstream';
    is $req->{method}, 'POST', 'method';
};

subtest 'binary body with CRLF inside a chunk' => sub {
    my $data = join '', map { chr } 0 .. 255;
    my ($r, $req) = post_chunked(sprintf("%x\r\n%s\r\n0\r\n\r\n", length $data, $data));
    is $r->{status}, 200, 'status';
    is $req->{body}, $data, 'all 256 byte values intact';
};

subtest 'large chunked body (1 MiB in 64 KiB chunks)' => sub {
    my $chunk = 'q' x 65536;
    my ($r, $req) = post_chunked(join('', map { "10000\r\n$chunk\r\n" } 1 .. 16) . "0\r\n\r\n");
    is $r->{status}, 200, 'status';
    is length($req->{body}), 1 << 20, '1 MiB upstream';
};

subtest 'chunked upstream response reaches the client' => sub {
    my $res = http_req($sluice, 'GET', '/bytes/100000?chunked=1');
    is $res->{status}, 200, 'status';
    ok $res->{complete}, 'complete';
    is $res->{body_length}, 100000, 'all bytes';
    is $res->{body}, 'x' x 100000, 'content';
};

done_testing;
