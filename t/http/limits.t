# Size limits on the request: request line (http.large_request_line, default 8 KiB) -> 414,
# header block (32 KiB) -> 431, body over http.client_max_body_size (set to 1k here) -> 413
# for Content-Length and chunked bodies (answered before the body is read, connection closed so
# the unread body is never parsed as a request); many small headers are fine, the limit is
# bytes. Errors are JSON and nothing reaches the upstream.
use strict; use warnings; use lib 't/lib'; use Test::More;
use Time::HiRes qw(time);
use Sluice::RawClient ();
use Sluice::Test qw(start_sluice start_mock_llm raw_http http_req decode_json);

my $llm = start_mock_llm();
my $sluice = start_sluice(
    config => { http => { client_max_body_size => '1k' } },
    routes => [ { id => 'echo', uri => '/echo*',
                  upstream => { type => 'roundrobin',
                                nodes => { '127.0.0.1:' . $llm->port => 1 } } } ],
);

sub exchange { Sluice::RawClient::exchange($sluice, $_[0], $_[1] // 3) }

sub json_error {
    my ($r, $status) = @_;
    is $r->{status}, $status, "status $status" or diag substr($r->{raw}, 0, 300);
    like $r->{headers}{'content-type'} // '', qr{^application/json}, 'JSON content type';
    ok defined($r->{json}) && defined $r->{json}{error_msg}, 'error_msg in the body'
        or diag $r->{body};
}

subtest 'request line over 8 KiB: 414' => sub {
    $llm->clear;
    my $r = exchange("GET /echo/" . ('a' x 9000) . " HTTP/1.1\r\nHost: x\r\n\r\n");
    json_error($r, 414);
    ok $r->{closed}, 'connection closed';
    is scalar @{ $llm->requests }, 0, 'nothing upstream';
};

subtest 'request line under 8 KiB is served' => sub {
    $llm->clear;
    my $path = '/echo/' . ('b' x 7000);
    my $res = http_req($sluice, 'GET', $path);
    is $res->{status}, 200, 'status';
    is $llm->last_request->{path}, $path, 'long path intact upstream';
};

subtest 'headers over 32 KiB: 431' => sub {
    $llm->clear;
    my $h = join '', map { sprintf "X-Big-%02d: %s\r\n", $_, 'v' x 1000 } 1 .. 40;
    my $r = exchange("GET /echo HTTP/1.1\r\nHost: x\r\n$h\r\n");
    json_error($r, 431);
    ok $r->{closed}, 'connection closed';
    is scalar @{ $llm->requests }, 0, 'nothing upstream';
};

subtest 'one header over 32 KiB: 431' => sub {
    $llm->clear;
    my $r = exchange("GET /echo HTTP/1.1\r\nHost: x\r\nX-Huge: " . ('v' x 40000) . "\r\n\r\n");
    json_error($r, 431);
    is scalar @{ $llm->requests }, 0, 'nothing upstream';
};

subtest 'headers under 32 KiB are served' => sub {
    $llm->clear;
    my %h = map { (sprintf('X-Big-%02d', $_) => 'v' x 1000) } 1 .. 20;
    my $res = http_req($sluice, 'GET', '/echo', headers => \%h);
    is $res->{status}, 200, 'status';
    is $llm->last_request->{headers}{'x-big-20'}, 'v' x 1000, 'headers upstream';
};

subtest 'one 20 KiB header (under the 32 KiB limit) reaches the upstream intact' => sub {
    $llm->clear;
    my $res = http_req($sluice, 'GET', '/echo/big-header', headers => { 'X-Big' => 'h' x 20000 });
    is $res->{status}, 200, 'status';
    is length($llm->last_request->{headers}{'x-big'} // ''), 20000, 'not truncated upstream';
};

subtest 'many small headers (120, about 2 KiB) are served: the limit is bytes' => sub {
    $llm->clear;
    my %h = map { (sprintf('X-H%03d', $_) => "v$_") } 1 .. 120;
    my $res = http_req($sluice, 'GET', '/echo/many', headers => \%h);
    is $res->{status}, 200, 'status' or diag $res->{body};
    is $llm->last_request && $llm->last_request->{headers}{'x-h120'}, 'v120', 'all headers upstream';
};

subtest 'Content-Length body over the limit: 413 before reading it' => sub {
    $llm->clear;
    my $t0 = time;
    # the head alone: the gateway must answer without waiting for the body
    my $r = exchange("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n", 3);
    json_error($r, 413);
    cmp_ok time - $t0, '<', 1.5, 'answered at once';
    ok $r->{closed}, 'connection closed (the unread body must not be parsed as a request)';
    is scalar @{ $llm->requests }, 0, 'nothing upstream';
};

subtest 'a request hidden in an over-limit body is never served' => sub {
    $llm->clear;
    my $inner = "GET /echo/hidden HTTP/1.1\r\nHost: x\r\n\r\n";
    my $r = exchange("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n"
                     . $inner . ('p' x (2000 - length $inner)));
    is $r->{status}, 413, 'status 413';
    unlike $r->{raw}, qr{HTTP/1\.1 200}, 'no second response';
    is scalar @{ $llm->requests }, 0, 'nothing upstream';
};

subtest 'Content-Length body over the limit, body sent: 413' => sub {
    $llm->clear;
    my $res = http_req($sluice, 'POST', '/echo', body => 'x' x 1025);
    is $res->{status}, 413, 'status';
    ok $res->{json} && $res->{json}{error_msg}, 'JSON error';
    is scalar @{ $llm->requests }, 0, 'nothing upstream';
};

subtest 'chunked body over the limit: 413' => sub {
    $llm->clear;
    my $chunks = join '', map { "100\r\n" . ('c' x 256) . "\r\n" } 1 .. 5;   # 1280 bytes
    my $r = exchange("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     . $chunks . "0\r\n\r\n");
    json_error($r, 413);
    ok $r->{closed}, 'connection closed';
    is scalar @{ $llm->requests }, 0, 'nothing upstream';
};

subtest 'body at the limit is served' => sub {
    $llm->clear;
    my $res = http_req($sluice, 'POST', '/echo', body => 'y' x 1024);
    is $res->{status}, 200, 'Content-Length 1024';
    is length($llm->last_request->{body}), 1024, 'whole body upstream';

    $llm->clear;
    my $r = exchange("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     . "Connection: close\r\n\r\n200\r\n" . ('z' x 512) . "\r\n200\r\n"
                     . ('z' x 512) . "\r\n0\r\n\r\n");
    is $r->{status}, 200, 'chunked 1024';
    is $llm->last_request->{body}, 'z' x 1024, 'whole chunked body upstream';
};

done_testing;
