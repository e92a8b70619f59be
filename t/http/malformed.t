# Malformed request heads: obs-fold, bare CR, invalid header names, whitespace before the
# colon, NUL bytes, broken request lines, HTTP/1.1 without Host or with an invalid Host
# (RFC 9112 3.2: 400). Each gets 400 JSON, the connection is closed (a request behind it is
# never served) and nothing goes upstream.
use strict; use warnings; use lib 't/lib'; use Test::More;
use Time::HiRes qw(time);
use Sluice::RawClient ();
use Sluice::Test qw(start_sluice start_mock_llm raw_http decode_json);

my $llm = start_mock_llm();
my $sluice = start_sluice(routes => [
    { id => 'echo', uri => '/echo*',
      upstream => { type => 'roundrobin', nodes => { '127.0.0.1:' . $llm->port => 1 } } },
]);

sub exchange { Sluice::RawClient::exchange($sluice, $_[0], $_[1] // 2) }

my $next = "GET /echo/next HTTP/1.1\r\nHost: x\r\n\r\n";

sub bad {
    my ($head, $name) = @_;
    subtest $name => sub {
        $llm->clear;
        my $r = exchange($head . $next);
        is $r->{status}, 400, 'status 400' or diag $r->{raw};
        like $r->{headers}{'content-type'} // '', qr{^application/json}, 'JSON content type';
        ok defined($r->{json}) && defined $r->{json}{error_msg}, 'error_msg in the body'
            or diag $r->{body};
        is $r->{responses}, 1, 'the request behind it was not served';
        ok $r->{closed}, 'connection closed after the 400';
        is scalar @{ $llm->requests }, 0, 'nothing reached the upstream';
    };
}

bad("GET /echo HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n", 'obs-fold (space)');
bad("GET /echo HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n\tb\r\n\r\n", 'obs-fold (tab)');
bad("GET /echo HTTP/1.1\r\nHost: x\r\nX-Cr: a\rb\r\n\r\n", 'bare CR in a header value');
bad("GET /echo HTTP/1.1\rHost: x\r\n\r\n", 'bare CR ending the request line');
bad("GET /echo HTTP/1.1\r\nHost: x\r\nX Bad: a\r\n\r\n", 'space inside a header name');
bad("GET /echo HTTP/1.1\r\nHost: x\r\nX(Bad): a\r\n\r\n", 'separator inside a header name');
bad("GET /echo HTTP/1.1\r\nHost: x\r\nX-Space : a\r\n\r\n", 'whitespace before the colon');
bad("GET /echo HTTP/1.1\r\nHost: x\r\n: no-name\r\n\r\n", 'empty header name');
bad("GET /echo HTTP/1.1\r\nHost: x\r\nNo-Colon\r\n\r\n", 'header line without a colon');
bad("GET /echo HTTP/1.1\r\nHost: x\r\nX-Nul: a\0b\r\n\r\n", 'NUL in a header value');
bad("GET /echo HTTP/1.1 extra\r\nHost: x\r\n\r\n", 'extra token in the request line');
bad("GET /echo\r\nHost: x\r\n\r\n", 'request line without a version');
bad("GET /echo HTTX/1.1\r\nHost: x\r\n\r\n", 'bad protocol name');
bad("G\x01T /echo HTTP/1.1\r\nHost: x\r\n\r\n", 'control character in the method');
bad("GET /ec ho HTTP/1.1\r\nHost: x\r\n\r\n", 'space in the target');
bad("GET /echo HTTP/1.1\r\n\r\n", 'HTTP/1.1 without Host');
bad("GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 'two Host headers');
bad("GET /echo HTTP/1.1\r\nHost: exa/mple\r\n\r\n", 'Host with a slash');
bad("GET /echo HTTP/1.1\r\nHost: a b\r\n\r\n", 'Host with a space');
bad("GET /echo HTTP/1.1\r\nHost: [::1\r\n\r\n", 'Host with an unclosed IPv6 bracket');
bad("GET /echo HTTP/1.1\r\nHost: ok.example:abc\r\n\r\n", 'Host with a non-numeric port');

subtest 'a good request on the same server still works' => sub {
    $llm->clear;
    my $r = exchange("GET /echo/ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    is $r->{status}, 200, 'status 200';
    is $llm->last_request->{path}, '/echo/ok', 'reached the upstream';
};

done_testing;
