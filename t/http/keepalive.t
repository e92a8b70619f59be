# Keep-alive: several requests on one client connection (and the upstream connection reused),
# Connection: close honoured, HTTP/1.0 closes by default and keeps alive on request, HEAD
# keeps Content-Length and sends no body so the next response on the connection is intact;
# the same after 204/304 and after an upstream 404.
use strict; use warnings; use lib 't/lib'; use Test::More;
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time);
use Sluice::Test qw(start_sluice start_mock_llm decode_json);

my $llm = start_mock_llm();
my $sluice = start_sluice(routes => [
    { id => 'echo', uri => '/*',
      upstream => { type => 'roundrobin', nodes => { '127.0.0.1:' . $llm->port => 1 } } },
]);

use Sluice::RawClient qw(fill read_resp send_bytes closed_by_server);

sub client { Sluice::RawClient::connect_to($sluice->port) }

subtest 'three requests on one connection' => sub {
    $llm->clear;
    my $c = client();
    for my $i (1 .. 3) {
        send_bytes($c, "GET /echo/ka$i HTTP/1.1\r\nHost: x\r\n\r\n");
        my $r = read_resp($c);
        is $r->{status}, 200, "request $i: status";
        is $r->{json}{path}, "/echo/ka$i", "request $i: own response";
        unlike $r->{headers}{connection} // '', qr/close/i, "request $i: no Connection: close";
    }
    send_bytes($c, "POST /echo/ka4 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
    my $r = read_resp($c);
    is $r->{json}{body}, 'abc', 'a POST with a body in between';
    my $reqs = $llm->requests;
    is scalar @$reqs, 4, 'four requests upstream';
    is $reqs->[3]{body}, 'abc', 'body upstream';
    is scalar(keys %{{ map { $_->{conn} => 1 } @$reqs }}), 1,
        'the upstream connection was reused too';
};

subtest 'Connection: close ends the connection' => sub {
    my $c = client();
    send_bytes($c, "GET /echo/close HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    my $r = read_resp($c);
    is $r->{status}, 200, 'status';
    like $r->{headers}{connection} // '', qr/close/i, 'Connection: close in the response';
    ok closed_by_server($c, 2), 'server closed';
};

subtest 'HTTP/1.0 closes by default' => sub {
    $llm->clear;
    my $c = client();
    send_bytes($c, "GET /echo/ten HTTP/1.0\r\n\r\n");
    my $r = read_resp($c);
    is $r->{status}, 200, 'status';
    like $r->{version}, qr/\A1\.[01]\z/, 'HTTP/1.x response';
    ok $r->{headers}{'content-length'} || !$r->{headers}{'transfer-encoding'},
        'no chunked encoding towards an HTTP/1.0 client';
    is $r->{json}{path}, '/echo/ten', 'body';
    ok closed_by_server($c, 2), 'server closed';
    is $llm->last_request->{path}, '/echo/ten', 'reached the upstream';
};

subtest 'HTTP/1.0 with Connection: keep-alive stays open' => sub {
    my $c = client();
    for my $i (1 .. 2) {
        send_bytes($c, "GET /echo/ten-ka$i HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        my $r = read_resp($c);
        is $r->{status}, 200, "request $i: status";
        is $r->{json}{path}, "/echo/ten-ka$i", "request $i: body";
        like $r->{headers}{connection} // '', qr/keep-alive/i, "request $i: Connection: keep-alive";
    }
};

subtest 'HTTP/1.0 client, chunked upstream response: not chunked to the client' => sub {
    my $c = client();
    send_bytes($c, "GET /bytes/3000?chunked=1 HTTP/1.0\r\n\r\n");
    my $r = read_resp($c);
    is $r->{status}, 200, 'status';
    unlike $r->{headers}{'transfer-encoding'} // '', qr/chunked/i, 'no Transfer-Encoding';
    is length $r->{body}, 3000, 'whole body, delimited by close or Content-Length';
};

subtest 'HEAD keeps Content-Length, sends no body, connection stays usable' => sub {
    $llm->clear;
    my $c = client();
    send_bytes($c, "GET /static.json HTTP/1.1\r\nHost: x\r\n\r\n");
    my $get = read_resp($c);
    is $get->{status}, 200, 'GET status';
    send_bytes($c, "HEAD /static.json HTTP/1.1\r\nHost: x\r\n\r\n");
    my $head = read_resp($c, 1);
    is $head->{status}, 200, 'HEAD status';
    is $head->{headers}{'content-length'}, $get->{headers}{'content-length'},
        'same Content-Length as GET';
    send_bytes($c, "GET /echo/after-head HTTP/1.1\r\nHost: x\r\n\r\n");
    my $next = read_resp($c);
    is $next->{status}, 200, 'next response parses (no stray HEAD body bytes)';
    is $next->{json}{path}, '/echo/after-head', 'and is the right one';
    is $llm->requests->[1]{method}, 'HEAD', 'upstream saw HEAD';
};

subtest 'keep-alive after an error response from the gateway (404)' => sub {
    my $c = client();
    send_bytes($c, "GET /status/404 HTTP/1.1\r\nHost: x\r\n\r\n");
    is read_resp($c)->{status}, 404, 'upstream 404 passed through';
    send_bytes($c, "GET /echo/after-404 HTTP/1.1\r\nHost: x\r\n\r\n");
    my $r = read_resp($c);
    is $r->{status}, 200, 'next request on the same connection';
    is $r->{json}{path}, '/echo/after-404', 'right response';
};

subtest '204 and 304 from the upstream: no body, connection stays usable' => sub {
    my $c = client();
    for my $code (204, 304) {
        send_bytes($c, "GET /status/$code HTTP/1.1\r\nHost: x\r\n\r\n");
        my $r = read_resp($c);
        is $r->{status}, $code, "$code passed through";
        ok !defined $r->{headers}{'transfer-encoding'}, "$code: no Transfer-Encoding";
        send_bytes($c, "GET /echo/after-$code HTTP/1.1\r\nHost: x\r\n\r\n");
        my $next = read_resp($c);
        is $next->{json}{path}, "/echo/after-$code", "$code: next response intact";
    }
};

done_testing;
