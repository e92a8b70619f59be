# Pipelining: several requests written at once on one connection are answered in order, each
# exactly once, even when an earlier one is slow, when the bytes arrive split at odd places,
# and when a pipelined request has a body. Upstream sees them in the same order.
use strict; use warnings; use lib 't/lib'; use Test::More;
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use Sluice::Test qw(start_sluice start_mock_llm decode_json);

my $llm = start_mock_llm();
my $sluice = start_sluice(routes => [
    { id => 'all', uri => '/*',
      upstream => { type => 'roundrobin', nodes => { '127.0.0.1:' . $llm->port => 1 } } },
]);

use Sluice::RawClient qw(fill read_resp send_bytes closed_by_server);

sub client { Sluice::RawClient::connect_to($sluice->port) }

subtest 'three pipelined requests, answered in order' => sub {
    $llm->clear;
    my $c = client();
    send_bytes($c, "GET /echo/p1 HTTP/1.1\r\nHost: x\r\n\r\n"
                 . "POST /echo/p2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                 . "GET /echo/p3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    my @r = map { read_resp($c) } 1 .. 3;
    is_deeply [ map { $_->{status} } @r ], [200, 200, 200], 'all 200';
    is_deeply [ map { $_->{json}{path} // '' } @r ], ['/echo/p1', '/echo/p2', '/echo/p3'],
        'in order';
    is $r[1]{json}{body}, 'hello', 'pipelined body belongs to the second request';
    ok closed_by_server($c, 2), 'closed after the Connection: close one';
    my $reqs = $llm->requests;
    is_deeply [ map { $_->{path} } @$reqs ], ['/echo/p1', '/echo/p2', '/echo/p3'],
        'upstream saw them in order';
    is $reqs->[1]{body}, 'hello', 'body upstream';
    is $reqs->[2]{body}, '', 'third has no body';
};

subtest 'a slow first request does not let the second overtake it' => sub {
    my $c = client();
    send_bytes($c, "GET /delay/300 HTTP/1.1\r\nHost: x\r\n\r\nGET /echo/fast HTTP/1.1\r\nHost: x\r\n\r\n");
    my $r1 = read_resp($c);
    my $r2 = read_resp($c);
    is $r1->{status}, 200, 'first status';
    unlike $r1->{body}, qr{/echo/fast}, 'first response is the delayed one';
    is $r2->{json}{path}, '/echo/fast', 'second response second';
};

subtest 'pipelined bytes split at odd places' => sub {
    $llm->clear;
    my $c = client();
    my $all = join '', map { "GET /echo/s$_ HTTP/1.1\r\nHost: x\r\n\r\n" } 1 .. 4;
    for my $piece (unpack '(a7)*', $all) {
        send_bytes($c, $piece);
        sleep 0.005;
    }
    my @r = map { read_resp($c) } 1 .. 4;
    is_deeply [ map { $_->{json}{path} // '' } @r ], [ map { "/echo/s$_" } 1 .. 4 ],
        'four responses in order';
};

subtest 'fifty pipelined requests in one write' => sub {
    $llm->clear;
    my $c = client();
    send_bytes($c, join '', map { "GET /echo/n$_ HTTP/1.1\r\nHost: x\r\n\r\n" } 1 .. 50);
    my @r = map { read_resp($c) } 1 .. 50;
    is scalar(grep { ($_->{status} // 0) == 200 } @r), 50, 'fifty 200s';
    is_deeply [ map { $_->{json}{path} // '' } @r ], [ map { "/echo/n$_" } 1 .. 50 ], 'in order';
    is scalar @{ $llm->requests }, 50, 'fifty upstream';
};

subtest 'a bad request in the pipeline ends it after the good ones' => sub {
    $llm->clear;
    my $c = client();
    send_bytes($c, "GET /echo/g1 HTTP/1.1\r\nHost: x\r\n\r\n"
                 . "GET /echo/bad HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n"
                 . "GET /echo/g3 HTTP/1.1\r\nHost: x\r\n\r\n");
    my $r1 = read_resp($c);
    my $r2 = read_resp($c);
    is $r1->{json}{path}, '/echo/g1', 'first served';
    is $r2->{status}, 400, 'second refused';
    ok closed_by_server($c, 2), 'closed: the third is not served';
    is_deeply [ map { $_->{path} } @{ $llm->requests } ], ['/echo/g1'], 'only the first upstream';
};

subtest 'nothing is served after a Connection: close request' => sub {
    $llm->clear;
    my $c = client();
    send_bytes($c, "GET /echo/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                 . "GET /echo/extra HTTP/1.1\r\nHost: x\r\n\r\n");
    my $r = read_resp($c);
    is $r->{json}{path}, '/echo/last', 'first served';
    ok closed_by_server($c, 2), 'then closed, no second response';
    is_deeply [ map { $_->{path} } @{ $llm->requests } ], ['/echo/last'], 'only the first upstream';
};

done_testing;
