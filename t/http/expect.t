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

use Sluice::RawClient qw(fill read_resp send_bytes closed_by_server);

sub client { Sluice::RawClient::connect_to($sluice->port) }

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
