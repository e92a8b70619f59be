# The native HTTP/1.1 upstream client (core/upstream_h1.c) against a scripted raw upstream:
# response framing (Content-Length, chunked with extensions and trailers, close-delimited,
# HEAD/204/304 without a body, LF-only heads, 1xx before the final head), what it sends
# (request line, Host, Content-Length, no client framing), connection reuse and its limits
# (keepalive_requests, Connection: close, bytes after a response, idle age), the retry of a
# request whose pooled connection was closed under it, and broken answers (invalid head, too
# big a head, a close before any byte, a chunked body cut short) as 502 JSON. The same routes
# with a host name instead of an IP literal go through libcurl and must behave the same.
use strict; use warnings; use lib 't/lib'; use Test::More;
use IO::Select;
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);
use Sluice::Test qw(start_sluice http_req decode_json);

# ---- the raw upstream: one process, a select loop, scripted answers by path ----

my $listen = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 64,
                                   ReuseAddr => 1) or die "listen: $!";
my $port = $listen->sockport;
my $log = "/tmp/sluice-raw-up-$$.jsonl";
unlink $log;

my $pid = fork // die "fork: $!";
if ($pid == 0) {
    serve();
    POSIX::_exit(0);
}
close $listen;
END { local $?; if ($pid) { kill 'KILL', $pid; waitpid $pid, 0; unlink $log } }

sub serve {
    my $sel = IO::Select->new($listen);
    my (%buf, %conn_id, %seq);
    my $next_id = 0;
    my $deadline = time + 120;
    while (time < $deadline) {
        for my $s ($sel->can_read(0.5)) {
            if ($s == $listen) {
                my $c = $listen->accept or next;
                $sel->add($c);
                $conn_id{$c} = ++$next_id;
                $buf{$c} = '';
                $seq{$c} = 0;
                next;
            }
            my $n = sysread($s, $buf{$s}, 65536, length $buf{$s});
            if (!$n) { $sel->remove($s); close $s; next; }
            while ($buf{$s} =~ /\A(.*?)\r\n\r\n/s) {
                my $head = $1;
                my ($len) = $head =~ /^content-length:\s*(\d+)/im;
                $len //= 0;
                last if length($buf{$s}) < length($head) + 4 + $len;
                my $body = substr($buf{$s}, length($head) + 4, $len);
                substr($buf{$s}, 0, length($head) + 4 + $len) = '';
                my ($method, $path) = $head =~ /\A(\S+) (\S+)/;
                my $n = ++$seq{$s};
                open my $fh, '>>', $log or die;
                my $h = $head;
                $h =~ s/\\/\\\\/g; $h =~ s/"/\\"/g; $h =~ s/\r\n/\\n/g;
                print $fh qq({"conn":$conn_id{$s},"seq":$n,"method":"$method","path":"$path",)
                    . qq("len":$len,"head":"$h"}\n);
                close $fh;
                my $out = answer($method, $path, $n, $body);
                if (!defined $out) { $sel->remove($s); close $s; last; }
                if ($path =~ m{/trickle}) {
                    # a byte at a time: every parser state meets a read boundary
                    for my $i (0 .. length($out) - 1) {
                        syswrite($s, substr($out, $i, 1));
                        select(undef, undef, undef, 0.002);
                    }
                } else {
                    syswrite($s, $out);
                }
                if ($path =~ m{^/(?:native|curl)/(close|conn-close|junk|garbage)}) {
                    $sel->remove($s); close $s; last;
                }
            }
        }
    }
}

sub answer {
    my ($method, $path, $n, $body) = @_;
    $path =~ s{^/(?:native|curl)}{};        # the route prefix: /<engine>/<case>
    my $json = qq({"path":"$path","n":$n,"body":"$body"});
    my $ok = sub {
        my ($b, @h) = @_;
        return join('', "HTTP/1.1 200 OK\r\n", map("$_\r\n", @h),
                    "Content-Length: " . length($b) . "\r\n\r\n", $method eq 'HEAD' ? '' : $b);
    };
    return $ok->($json, 'Content-Type: application/json') if $path =~ m{^/plain};
    if ($path =~ m{^/garbage/(\d+)}) {
        my @g = (
            "\x00\x01\x02 not http at all\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX: \x7f\r\n\r\n",
            "HTTP/1.1 200 OK\r\n" . ("a" x 70000),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                . "3\r\nabc\r\n0\r\n\r\n",
        );
        return $g[$1 % @g];
    }
    return "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
         . "X-Trickle: 1\r\n\r\n4;a=b\r\nslow\r\n1\r\n \r\n5\r\nbytes\r\n0\r\nT: x\r\n\r\n"
        if $path =~ m{^/trickle/chunked};
    return "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nX-Trickle: 1\r\n\r\n0123456789"
        if $path =~ m{^/trickle/length};
    return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Kind: chunked\r\n\r\n"
         . "5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n"
        if $path =~ m{^/chunked};
    return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        . "3\r\nab" if $path =~ m{^/cutchunk};          # then (after the next request) a close
    return "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"
        if $path =~ m{^/close};
    return "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
         . $ok->($json) if $path =~ m{^/continue};
    return "HTTP/1.1 200 OK\nContent-Length: 2\nX-Lf: yes\n\nok" if $path =~ m{^/lf};
    return "HTTP/1.1 204 No Content\r\nX-Empty: 1\r\n\r\n" if $path =~ m{^/204};
    return "HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\nContent-Length: 10\r\n\r\n"
        if $path =~ m{^/304};
    return $ok->($json, 'Connection: close') if $path =~ m{^/conn-close};
    return $ok->($json) . "HTTP/1.1 200 OK\r\n" if $path =~ m{^/junk};
    return "HTTP/1.1 200 OK\r\nBad Header Line\r\n\r\n" if $path =~ m{^/badhead};
    return "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx"
        if $path =~ m{^/twolengths};
    return "HTTP/1.1 200 OK\r\n" . ("X-Big: " . ('b' x 1000) . "\r\n") x 80 . "\r\n"
        if $path =~ m{^/bighead};
    return undef if $path =~ m{^/drop$};                 # close without a byte
    return undef if $path =~ m{^/drop-second} && $n == 2;
    return $ok->($json);
}

sub records {
    open my $fh, '<', $log or return ();
    return map { decode_json($_) } <$fh>;
}

sub clear_records { unlink $log }

my $ip   = "127.0.0.1:$port";
my $name = "localhost:$port";

my @routes = map {
    { id => $_->[0], uri => "/$_->[0]/*",
      upstream => { type => 'roundrobin', nodes => { $_->[1] => 1 },
                    timeout => { connect => 2, send => 2, read => 2 } } }
} (['native', $ip], ['curl', $name]);

my $sluice = start_sluice(
    routes => \@routes,
    config => { upstream => { keepalive_requests => 3, keepalive_timeout => 1 } },
);

# the route prefix is not stripped: the upstream sees /<engine>/<case>
sub ask {
    my ($tag, $method, $path, %o) = @_;
    return http_req($sluice, $method, "/$tag$path", %o);
}

for my $tag (qw(native curl)) {
    subtest "$tag: Content-Length answer, and what was sent" => sub {
        clear_records();
        my $r = ask($tag, 'POST', '/plain/a?x=1', body => 'abc',
                    headers => { 'Content-Type' => 'text/plain' });
        is $r->{status}, 200, 'status';
        is $r->{json}{body}, 'abc', 'body reached the upstream';
        my ($rec) = records();
        is $rec->{path}, "/$tag/plain/a?x=1", 'request target';
        like $rec->{head}, qr{\APOST /$tag/plain/a\?x=1 HTTP/1\.1$}m, 'request line';
        like $rec->{head}, qr/^Host: 127\.0\.0\.1:\d+$/mi, 'Host: the client\'s (pass_host pass)';
        like $rec->{head}, qr/^content-length: 3$/mi, 'Content-Length: 3';
        unlike $rec->{head}, qr/^transfer-encoding/mi, 'no Transfer-Encoding';
        unlike $rec->{head}, qr/^expect:/mi, 'no Expect';
        like $rec->{head}, qr/^x-forwarded-for: 127\.0\.0\.1$/mi, 'X-Forwarded-For';
    };

    subtest "$tag: chunked answer with extensions and a trailer" => sub {
        my $r = ask($tag, 'GET', '/chunked');
        is $r->{status}, 200, 'status';
        is $r->{body}, 'hello world', 'decoded body';
        is $r->{headers}{'x-kind'}, 'chunked', 'header passed';
    };

    subtest "$tag: 1xx heads before the final one are skipped" => sub {
        my $r = ask($tag, 'GET', '/continue');
        is $r->{status}, 200, 'final status';
        like $r->{body}, qr/"path"/, 'final body';
    };

    subtest "$tag: LF-only head" => sub {
        my $r = ask($tag, 'GET', '/lf');
        is $r->{status}, 200, 'status';
        is $r->{body}, 'ok', 'body';
        is $r->{headers}{'x-lf'}, 'yes', 'header';
    };

    subtest "$tag: HEAD, 204 and 304 have no body" => sub {
        my $r = ask($tag, 'HEAD', '/plain/h');
        is $r->{status}, 200, 'HEAD status';
        is $r->{body}, '', 'HEAD: no body';
        $r = ask($tag, 'GET', '/204');
        is $r->{status}, 204, 'status 204';
        is $r->{headers}{'x-empty'}, '1', '204 header';
        $r = ask($tag, 'GET', '/304');
        is $r->{status}, 304, 'status 304';
        is $r->{body}, '', '304: no body';
        $r = ask($tag, 'GET', '/plain/after');
        is $r->{status}, 200, 'the connection still works after them';
    };

    subtest "$tag: an answer arriving a byte at a time" => sub {
        my $r = ask($tag, 'GET', '/trickle/chunked');
        is $r->{status}, 200, 'chunked: status (after a 100)';
        is $r->{headers}{'x-trickle'}, '1', 'chunked: header';
        is $r->{body}, 'slow bytes', 'chunked: body';
        $r = ask($tag, 'GET', '/trickle/length');
        is $r->{status}, 200, 'length: status';
        is $r->{body}, '0123456789', 'length: body';
        is ask($tag, 'GET', '/plain/after-trickle')->{status}, 200, 'the pool is fine after';
    };

    subtest "$tag: body until close (HTTP/1.0, no length)" => sub {
        my $r = ask($tag, 'GET', '/close');
        is $r->{status}, 200, 'status';
        is $r->{body}, 'until the end', 'body';
    };

    subtest "$tag: broken answers are 502 JSON" => sub {
        # curl takes differing lengths (the first wins) and heads up to 300 KB; the native
        # client refuses both (64 KB is its limit)
        for my $case ('/badhead', '/drop', $tag eq 'native' ? ('/twolengths', '/bighead') : ()) {
            my $r = ask($tag, 'GET', $case);
            is $r->{status}, 502, "$case: 502";
            ok ref $r->{json} eq 'HASH' && $r->{json}{error_msg}, "$case: JSON error"
                or diag $r->{body};
        }
    };
}

subtest 'native: garbage from the upstream is a 502 or a cut response, never a crash' => sub {
    my @pids = $sluice->worker_pids;
    for my $i (0 .. 8) {
        my $r = ask('native', 'GET', "/garbage/$i");
        ok(($r->{status} == 502 && ref $r->{json} eq 'HASH')
           || ($r->{status} == 200 && (!$r->{complete} || $i == 8)), "case $i: $r->{status}")
            or diag explain $r;
    }
    is ask('native', 'GET', '/plain/after-garbage')->{status}, 200, 'still serving';
    is_deeply [ $sluice->worker_pids ], \@pids, 'the same worker';
};

subtest 'native: connections are reused up to keepalive_requests, then replaced' => sub {
    clear_records();
    for my $i (1 .. 7) {
        my $r = ask('native', 'GET', "/plain/k$i");
        is $r->{status}, 200, "request $i";
    }
    my %per;
    $per{ $_->{conn} }++ for records();
    my @counts = sort { $b <=> $a } values %per;
    is $counts[0], 3, 'at most 3 requests on one connection (keepalive_requests 3)';
    cmp_ok scalar(keys %per), '<=', 3, 'and connections were reused (7 requests, <= 3 conns)';
};

subtest 'native: Connection: close and bytes after a response end the connection' => sub {
    clear_records();
    is ask('native', 'GET', '/conn-close')->{status}, 200, 'Connection: close answer';
    is ask('native', 'GET', '/plain/x1')->{status}, 200, 'next request';
    is ask('native', 'GET', '/junk')->{status}, 200, 'answer followed by junk';
    is ask('native', 'GET', '/plain/x2')->{status}, 200, 'next request';
    my @r = records();
    isnt $r[1]{conn}, $r[0]{conn}, 'new connection after Connection: close';
    isnt $r[3]{conn}, $r[2]{conn}, 'new connection after junk';
};

subtest 'native: a pooled connection closed under the request is retried once' => sub {
    is ask('native', 'GET', '/conn-close')->{status}, 200, 'a fresh connection next';
    clear_records();
    is ask('native', 'GET', '/plain/first')->{status}, 200, 'first request';
    my $r = ask('native', 'GET', '/drop-second');
    is $r->{status}, 200, 'second request answered after the retry';
    my @r = records();
    is scalar(@r), 3, 'the upstream saw the dropped attempt and the retry';
    is $r[1]{conn}, $r[0]{conn}, 'the first attempt used the pooled connection';
    isnt $r[2]{conn}, $r[1]{conn}, 'the retry used a new one';
};

subtest 'native: idle connections older than keepalive_timeout are not reused' => sub {
    clear_records();
    is ask('native', 'GET', '/plain/i1')->{status}, 200, 'first';
    sleep 2.2;
    is ask('native', 'GET', '/plain/i2')->{status}, 200, 'second, after the idle age';
    my @r = records();
    isnt $r[1]{conn}, $r[0]{conn}, 'a new connection';
};

subtest 'native: a chunked body cut short closes the client connection' => sub {
    my $r = ask('native', 'GET', '/cutchunk');
    # the raw server holds the connection open: the read timeout (2 s) ends it
    ok !$r->{complete} || $r->{status} >= 500, 'not a clean end'
        or diag explain $r;
    like $r->{body} // '', qr/^hello/, 'what came was relayed';
};

done_testing;
