# Proxy basics: methods, body and query (raw, absolute-form targets too), hop-by-hop request
# and response headers, X-Forwarded-*, pass_host, upstream statuses and headers passed
# through, a body the upstream cuts short, weighted round robin, retrying another node after a
# connect failure (and not with retries 0), and the gateway's own errors (502 connect failure,
# 504 read timeout with and without a request body, 404).
use strict; use warnings; use lib 't/lib'; use Test::More;
use Time::HiRes qw(time);
use Sluice::Test qw(start_sluice start_mock_llm http_req free_port raw_http);

my ($llm, $llm2) = (start_mock_llm(), start_mock_llm());
my $node  = '127.0.0.1:' . $llm->port;
my $node2 = '127.0.0.1:' . $llm2->port;
my $dead  = '127.0.0.1:' . free_port();     # held by us, nothing listens there

my $sluice = start_sluice(routes => [
    { id => 'sse', uri => '/sse', upstream => { type => 'roundrobin', nodes => { $node => 1 } } },
    { id => 'basic', uri => '/echo*', upstream => { type => 'roundrobin', nodes => { $node => 1 } } },
    { id => 'node', uri => '/echo/pass-node', priority => 10,
      upstream => { type => 'roundrobin', pass_host => 'node', nodes => { $node => 1 } } },
    { id => 'rewrite', uri => '/echo/pass-rewrite', priority => 10,
      upstream => { type => 'roundrobin', pass_host => 'rewrite', upstream_host => 'backend.example',
                    nodes => { $node => 1 } } },
    { id => 'wrr', uri => '/static.json',
      upstream => { type => 'roundrobin', nodes => { $node => 3, $node2 => 1 } } },
    { id => 'half', uri => '/echo/half/*',
      upstream => { type => 'roundrobin', nodes => { $dead => 1, $node => 1 } } },
    { id => 'half0', uri => '/echo/half0/*',
      upstream => { type => 'roundrobin', retries => 0, nodes => { $dead => 1, $node => 1 } } },
    { id => 'dead', uri => '/dead',
      upstream => { type => 'roundrobin', nodes => { $dead => 1 } } },
    { id => 'slow', uri => '/delay/*',
      upstream => { type => 'roundrobin', nodes => { $node => 1 },
                    timeout => { connect => 1, send => 1, read => 0.5 } } },
]);

sub json_error_ok {
    my ($res, $status, $name) = @_;
    is $res->{status}, $status, "$name: status $status";
    like $res->{headers}{'content-type'} // '', qr{^application/json}, "$name: JSON content type";
    ok ref $res->{json} eq 'HASH' && defined $res->{json}{error_msg}, "$name: body has error_msg"
        or diag $res->{body};
}

subtest 'GET with a query reaches the upstream' => sub {
    $llm->clear;
    my $res = http_req($sluice, 'GET', '/echo/get?a=1&b=two%20words');
    is $res->{status}, 200, 'status';
    is $res->{json}{path}, '/echo/get', 'client sees the echoed path';
    my $req = $llm->last_request;
    is $req->{method}, 'GET', 'upstream method';
    is $req->{path}, '/echo/get', 'upstream path';
    is $req->{query}, 'a=1&b=two%20words', 'query passed as sent';
    is $req->{body}, '', 'no body upstream';
};

for my $method (qw(POST PUT)) {
    subtest "$method body reaches the upstream" => sub {
        $llm->clear;
        my $body = "hello $method " . ('x' x 5000);
        my $res = http_req($sluice, $method, '/echo/m?q=1', body => $body,
                           headers => { 'Content-Type' => 'text/plain' });
        is $res->{status}, 200, 'status';
        is $res->{json}{method}, $method, 'client sees the echo';
        my $req = $llm->last_request;
        is $req->{method}, $method, 'upstream method';
        is $req->{body}, $body, 'body intact upstream';
        is $req->{query}, 'q=1', 'query';
        is $req->{headers}{'content-length'}, length($body), 'Content-Length upstream';
        is $req->{headers}{'content-type'}, 'text/plain', 'Content-Type upstream';
    };
}

subtest 'DELETE' => sub {
    $llm->clear;
    my $res = http_req($sluice, 'DELETE', '/echo/item/7');
    is $res->{status}, 200, 'status';
    is $res->{json}{method}, 'DELETE', 'client sees DELETE echoed';
    is $llm->last_request->{method}, 'DELETE', 'upstream method';
    is $llm->last_request->{path}, '/echo/item/7', 'upstream path';
};

subtest 'HEAD: no body, Content-Length kept' => sub {
    $llm->clear;
    my $get = http_req($sluice, 'GET', '/echo/head');
    $llm->clear;
    my $res = http_req($sluice, 'HEAD', '/echo/head');
    is $res->{status}, 200, 'status';
    is $res->{body_length}, 0, 'no body';
    ok defined $res->{headers}{'content-length'}, 'Content-Length present';
    is $llm->last_request->{method}, 'HEAD', 'upstream saw HEAD';
};

subtest 'hop-by-hop headers are not forwarded' => sub {
    $llm->clear;
    my $res = http_req($sluice, 'GET', '/echo/hop', headers => {
        'Connection'       => 'close, X-Conn-Listed',
        'X-Conn-Listed'    => 'drop me',
        'Keep-Alive'       => 'timeout=5',
        'TE'               => 'trailers',
        'Upgrade'          => 'websocket',
        'Proxy-Connection' => 'keep-alive',
        'X-Keep'           => 'yes',
    });
    is $res->{status}, 200, 'status';
    my $h = $llm->last_request->{headers};
    is $h->{'x-keep'}, 'yes', 'ordinary header forwarded';
    ok !exists $h->{'keep-alive'}, 'no Keep-Alive';
    ok !exists $h->{te}, 'no TE';
    ok !exists $h->{upgrade}, 'no Upgrade';
    ok !exists $h->{'proxy-connection'}, 'no Proxy-Connection';
    ok !defined $h->{connection} || $h->{connection} !~ /x-conn-listed/i,
        'client Connection value not forwarded';
    ok !exists $h->{'x-conn-listed'}, 'header named in Connection not forwarded';
};

subtest 'X-Forwarded-For/-Proto/-Host and X-Real-IP added' => sub {
    $llm->clear;
    my $res = http_req($sluice, 'GET', '/echo/xff', headers => { Host => 'api.example:8443' });
    is $res->{status}, 200, 'status';
    my $h = $llm->last_request->{headers};
    is $h->{'x-forwarded-for'}, '127.0.0.1', 'X-Forwarded-For';
    is $h->{'x-forwarded-proto'}, 'http', 'X-Forwarded-Proto';
    is $h->{'x-forwarded-host'}, 'api.example:8443', 'X-Forwarded-Host is the client Host';
    is $h->{'x-real-ip'}, '127.0.0.1', 'X-Real-IP';

    $llm->clear;
    http_req($sluice, 'GET', '/echo/xff', headers => { 'X-Forwarded-For' => '10.1.2.3' });
    is $llm->last_request->{headers}{'x-forwarded-for'}, '10.1.2.3, 127.0.0.1',
        'existing X-Forwarded-For is appended to';
};

subtest 'pass_host pass keeps the client Host' => sub {
    $llm->clear;
    http_req($sluice, 'GET', '/echo/host', headers => { Host => 'client.example' });
    is $llm->last_request->{headers}{host}, 'client.example', 'Host upstream';
};

subtest 'pass_host node sends the node address' => sub {
    $llm->clear;
    my $res = http_req($sluice, 'GET', '/echo/pass-node', headers => { Host => 'client.example' });
    is $res->{status}, 200, 'status';
    is $llm->last_request->{headers}{host}, $node, 'Host is host:port of the node';
};

subtest 'pass_host rewrite sends upstream_host' => sub {
    $llm->clear;
    my $res = http_req($sluice, 'GET', '/echo/pass-rewrite', headers => { Host => 'client.example' });
    is $res->{status}, 200, 'status';
    is $llm->last_request->{headers}{host}, 'backend.example', 'Host is upstream_host';
};

subtest 'PATCH and OPTIONS pass through' => sub {
    for my $method (qw(PATCH OPTIONS)) {
        $llm->clear;
        my $res = http_req($sluice, $method, '/echo/other', body => 'b');
        is $res->{status}, 200, "$method status";
        is $llm->last_request->{method}, $method, "$method upstream";
        is $llm->last_request->{body}, 'b', "$method body upstream";
    }
};

subtest 'path and query are forwarded raw (no decoding or normalising)' => sub {
    $llm->clear;
    my $res = http_req($sluice, 'GET', '/echo/a%2Fb/%7Euser?x=%20y&x=2&flag');
    is $res->{status}, 200, 'status';
    is $llm->last_request->{path}, '/echo/a%2Fb/%7Euser', 'path as sent';
    is $llm->last_request->{query}, 'x=%20y&x=2&flag', 'query as sent';
};

subtest 'absolute-form request target' => sub {
    $llm->clear;
    my $raw = raw_http($sluice, "GET http://abs.example/echo/abs?q=1 HTTP/1.1\r\n"
                       . "Host: abs.example\r\nConnection: close\r\n\r\n", timeout => 3);
    like $raw, qr{\AHTTP/1\.1 200 }, 'status 200';
    my $req = $llm->last_request;
    is $req && $req->{path}, '/echo/abs', 'origin-form path upstream';
    is $req && $req->{query}, 'q=1', 'query upstream';
};

subtest 'upstream statuses, bodies and Content-Length pass through' => sub {
    my $res = http_req($sluice, 'GET', '/echo/s?mock_status=503');
    is $res->{status}, 503, 'upstream 503 passed';
    is $res->{json}{error}{code}, 503, 'upstream body passed';
    $res = http_req($sluice, 'GET', '/echo/s?mock_status=404');
    is $res->{status}, 404, 'upstream 404 is not the gateway\'s 404';
    ok !defined $res->{json}{error_msg}, 'upstream body, not "Route Not Found"';
    $res = http_req($sluice, 'GET', '/static.json');
    is $res->{headers}{'content-length'}, 1024, 'Content-Length kept';
    ok !$res->{chunked}, 'not re-chunked';
    is $res->{headers}{'x-request-id'}, $llm->last_request && 'mock-' . $llm->last_request->{id},
        'upstream headers passed';
};

subtest 'a 12 KiB upstream response header reaches the client intact' => sub {
    my $res = http_req($sluice, 'GET', '/echo/big-resp-header',
                       headers => { 'X-Mock-Header' => 'X-Big: ' . ('b' x 12000) });
    is $res->{status}, 200, 'status';
    is length($res->{headers}{'x-big'} // ''), 12000, 'not truncated';
};

subtest 'hop-by-hop response headers are not passed to the client' => sub {
    my $res = http_req($sluice, 'GET', '/echo/rh', headers => {
        'X-Mock-Header' => 'Keep-Alive: timeout=99' });
    is $res->{status}, 200, 'status';
    ok !exists $res->{headers}{'keep-alive'}, 'no upstream Keep-Alive';
    $res = http_req($sluice, 'GET', '/echo/rh', headers => { 'X-Mock-Header' => 'X-Up: 1' });
    is $res->{headers}{'x-up'}, '1', 'ordinary upstream header passed';
};

subtest 'upstream cuts the body short: the client is not left hanging' => sub {
    my $t0 = time;
    my $res = http_req($sluice, 'GET', '/echo/cut?mock_cut=1', timeout => 4);
    cmp_ok time - $t0, '<', 2, 'the client connection ended promptly';
    ok !$res->{complete}, 'the client can tell the body is incomplete';
    $t0 = time;
    $res = http_req($sluice, 'GET', '/sse?n=5&mock_cut=2', timeout => 4);
    cmp_ok time - $t0, '<', 2, 'cut stream: ended promptly';
    ok !$res->{complete}, 'cut stream: no clean end';
};

subtest 'weighted round robin 3:1' => sub {
    $llm->clear;
    $llm2->clear;
    my $ok = 0;
    for (1 .. 40) {
        $ok++ if http_req($sluice, 'GET', '/static.json')->{status} == 200;
    }
    is $ok, 40, 'all 40 requests succeeded';
    my ($a, $b) = (scalar @{ $llm->requests }, scalar @{ $llm2->requests });
    is $a + $b, 40, 'every request reached one of the nodes';
    cmp_ok $a, '>=', 26, "weight 3 node got $a (>= 26)";
    cmp_ok $a, '<=', 34, "weight 3 node got $a (<= 34)";
    cmp_ok $b, '>=', 6, "weight 1 node got $b (>= 6)";
};

subtest 'a node that refuses connections is retried on the other one' => sub {
    $llm->clear;
    my @st = map { http_req($sluice, 'GET', "/echo/half/$_")->{status} } 1 .. 6;
    is_deeply \@st, [ (200) x 6 ], 'all six served';
    is scalar @{ $llm->requests }, 6, 'all by the live node';
};

subtest 'retries 0: the connect failure is answered 502' => sub {
    my @st = map { http_req($sluice, 'GET', "/echo/half0/$_")->{status} } 1 .. 6;
    ok((grep { $_ == 502 } @st), 'some requests got 502 (' . join(',', @st) . ')');
    ok((grep { $_ == 200 } @st), 'the others 200');
};

subtest 'connect failure: 502 JSON' => sub {
    my $res = http_req($sluice, 'GET', '/dead', timeout => 10);
    json_error_ok($res, 502, 'connect failure');
};

subtest 'upstream read timeout: 504 JSON' => sub {
    $llm->clear;
    my $t0 = time;
    my $res = http_req($sluice, 'GET', '/delay/2000', timeout => 10);
    my $took = time - $t0;
    json_error_ok($res, 504, 'timeout');
    cmp_ok $took, '<', 1.8, sprintf('answered before the upstream (%.2fs)', $took);
    cmp_ok $took, '>=', 0.4, 'after about the read timeout';
    is $llm->last_request->{path}, '/delay/2000', 'the request reached the upstream';
};

subtest 'upstream read timeout with a request body: 504 JSON as fast' => sub {
    $llm->clear;
    my $t0 = time;
    my $res = http_req($sluice, 'POST', '/delay/2000', body => '{"a":1}', timeout => 10);
    my $took = time - $t0;
    json_error_ok($res, 504, 'timeout');
    cmp_ok $took, '<', 0.9, sprintf('about the 0.5 s read timeout after the body was sent (%.2fs)', $took);
    is $llm->last_request->{body}, '{"a":1}', 'the body reached the upstream';
};

subtest 'no route: 404 JSON' => sub {
    $llm->clear;
    my $res = http_req($sluice, 'GET', '/nothing/here');
    json_error_ok($res, 404, 'no route');
    is $res->{json}{error_msg}, '404 Route Not Found', 'APISIX message';
    is scalar @{ $llm->requests }, 0, 'nothing reached the upstream';
};

done_testing;
