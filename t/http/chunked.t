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

use Sluice::RawClient qw(fill read_resp send_bytes closed_by_server);

sub client { Sluice::RawClient::connect_to($sluice->port) }

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
