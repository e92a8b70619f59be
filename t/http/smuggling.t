# Request framing a smuggler would abuse: Content-Length with Transfer-Encoding, differing or
# malformed Content-Length, bad chunk sizes, unknown transfer codings. Each is refused with a
# JSON error, the connection is closed, and nothing (not even a smuggled second request)
# reaches the upstream.
use strict; use warnings; use lib 't/lib'; use Test::More;
use Time::HiRes qw(time);
use Sluice::RawClient ();
use Sluice::Test qw(start_sluice start_mock_llm raw_http decode_json);

my $llm = start_mock_llm();
my $sluice = start_sluice(routes => [
    { id => 'echo', uri => '/echo*',
      upstream => { type => 'roundrobin', nodes => { '127.0.0.1:' . $llm->port => 1 } } },
]);

# Sends $bytes on a new connection; returns the first response parsed, plus whether the
# server closed the connection (rather than us giving up after $wait seconds).
sub exchange { Sluice::RawClient::exchange($sluice, $_[0], $_[1] // 2) }

sub refused {
    my ($bytes, $status, $name) = @_;
    subtest $name => sub {
        $llm->clear;
        my $r = exchange($bytes);
        like $r->{status}, qr/\A(?:$status)\z/, "status $status" or diag $r->{raw};
        like $r->{headers}{'content-type'} // '', qr{^application/json}, 'JSON content type';
        ok defined($r->{json}) && defined $r->{json}{error_msg}, 'error_msg in the body'
            or diag $r->{body};
        is $r->{responses}, 1, 'exactly one response (no smuggled second one)';
        ok $r->{closed}, 'connection closed by the gateway';
        is scalar @{ $llm->requests }, 0, 'nothing reached the upstream';
    };
}

my $smuggled = "GET /echo/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";

refused("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        . "0\r\n\r\n$smuggled", 400, 'Content-Length and Transfer-Encoding together');

refused("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
        . "0\r\n\r\n$smuggled", 400, 'Transfer-Encoding then Content-Length');

refused("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"
        . "hello!$smuggled", 400, 'differing duplicate Content-Length');

refused("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\nhello!",
        400, 'Content-Length list with different values');

refused("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400,
        'negative Content-Length');

refused("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n", 400,
        'non-numeric Content-Length');

refused("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400,
        'overflowing Content-Length');

refused("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        400, 'invalid chunk size');

refused("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        . "fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n", 400, 'overflowing chunk size');

refused("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        400, 'chunk data longer than its size');

refused("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        '400|501', 'chunked not the last transfer coding (400, or 501 for the unknown coding)');

refused("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc", 501,
        'Transfer-Encoding gzip: 501');

subtest 'the same Content-Length repeated is one body, not two requests' => sub {
    $llm->clear;
    my $r = exchange("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n"
                     . "Connection: close\r\n\r\nhello");
    ok $r->{status} == 200 || $r->{status} == 400, "200 or 400 (got $r->{status})";
    my $reqs = $llm->requests;
    ok @$reqs <= 1, 'at most one request upstream';
    is $reqs->[0]{body}, 'hello', 'body is the 5 bytes' if @$reqs;
};

done_testing;
