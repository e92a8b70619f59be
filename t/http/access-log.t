# Access log: one JSON line per finished request with the fields interface.md lists (time,
# remote_addr, method, uri, status, route_id, consumer, request_time and
# upstream_response_time in ms, upstream_addr, upstream_status, bytes_sent, request_type),
# for proxied requests, gateway errors (404, 502) and requests the client abandoned; lines
# still buffered are written on a graceful stop; SIGUSR1 reopens the file (rotation).
use strict; use warnings; use lib 't/lib'; use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use Sluice::Test qw(start_sluice start_mock_llm http_req free_port wait_for);

my $llm = start_mock_llm();
my $node = '127.0.0.1:' . $llm->port;
my $dead = '127.0.0.1:' . free_port();
my $sluice = start_sluice(routes => [
    { id => 'r1', uri => '/echo/*', upstream => { type => 'roundrobin', nodes => { $node => 1 } } },
    { id => 'slow', uri => '/delay/*', upstream => { type => 'roundrobin', nodes => { $node => 1 } } },
    { id => 'sse', uri => '/sse', upstream => { type => 'roundrobin', nodes => { $node => 1 } } },
    { id => 'dead', uri => '/dead', upstream => { type => 'roundrobin', nodes => { $dead => 1 } } },
]);

my $seen = 0;
# the log lines written since the last call, waiting until there are $n
sub new_lines {
    my ($n) = @_;
    my $all = $sluice->wait_access_log($seen + $n, 5);
    my @new = @$all[$seen .. $#$all];
    $seen = @$all;
    return \@new;
}

subtest 'proxied GET: every field' => sub {
    my $res = http_req($sluice, 'GET', '/echo/a?q=1&secret=no',
                       headers => { Authorization => 'Bearer sk-very-secret-token' });
    is $res->{status}, 200, 'status';
    my $lines = new_lines(1);
    is scalar @$lines, 1, 'one line';
    my $l = $lines->[0] // {};
    like $l->{time} // '', qr/\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)\z/,
        'time is ISO 8601';
    is $l->{remote_addr}, '127.0.0.1', 'remote_addr';
    is $l->{method}, 'GET', 'method';
    is $l->{uri}, '/echo/a?q=1&secret=no', 'uri with the query';
    is $l->{status}, 200, 'status';
    is $l->{route_id}, 'r1', 'route_id';
    ok exists $l->{consumer}, 'consumer present';
    is $l->{consumer} // '', '', 'no consumer';
    is $l->{upstream_addr}, $node, 'upstream_addr';
    is $l->{upstream_status}, 200, 'upstream_status';
    ok defined $l->{request_time} && $l->{request_time} =~ /\A[\d.]+\z/, 'request_time numeric';
    ok defined $l->{upstream_response_time} && $l->{upstream_response_time} =~ /\A[\d.]+\z/,
        'upstream_response_time numeric';
    cmp_ok $l->{bytes_sent} // 0, '>', length $res->{body}, 'bytes_sent counts head and body';
    cmp_ok $l->{bytes_sent} // 0, '<', length($res->{body}) + 1024, 'bytes_sent plausible';
    is $l->{request_type}, 'traditional_http', 'request_type';
    my $raw = do { local $/; open my $fh, '<', $sluice->prefix . '/logs/access.log'; <$fh> };
    unlike $raw, qr/sk-very-secret-token/, 'the Authorization value is not logged';
};

subtest 'request_time and upstream_response_time are milliseconds' => sub {
    http_req($sluice, 'GET', '/delay/300');
    my $l = new_lines(1)->[0] // {};
    is $l->{route_id}, 'slow', 'route_id';
    cmp_ok $l->{request_time} // 0, '>=', 290, "request_time $l->{request_time} >= 290 (ms)";
    cmp_ok $l->{request_time} // 1e9, '<', 3000, 'request_time < 3000';
    cmp_ok $l->{upstream_response_time} // 0, '>=', 280,
        "upstream_response_time $l->{upstream_response_time} >= 280 (ms)";
    cmp_ok $l->{upstream_response_time} // 1e9, '<=', ($l->{request_time} // 0) + 1,
        'upstream time within the request time';
};

subtest 'POST' => sub {
    http_req($sluice, 'POST', '/echo/p', body => 'x' x 100);
    my $l = new_lines(1)->[0] // {};
    is $l->{method}, 'POST', 'method';
    is $l->{uri}, '/echo/p', 'uri';
    is $l->{status}, 200, 'status';
};

subtest 'upstream error status passed through' => sub {
    http_req($sluice, 'GET', '/echo/e?mock_status=503');
    my $l = new_lines(1)->[0] // {};
    is $l->{status}, 503, 'status';
    is $l->{upstream_status}, 503, 'upstream_status';
};

subtest 'no route: 404 line' => sub {
    http_req($sluice, 'GET', '/nowhere');
    my $l = new_lines(1)->[0] // {};
    is $l->{status}, 404, 'status';
    is $l->{uri}, '/nowhere', 'uri';
    is $l->{route_id} // '', '', 'no route_id';
    is $l->{upstream_addr} // '', '', 'no upstream_addr';
};

subtest 'connect failure: 502 line' => sub {
    http_req($sluice, 'GET', '/dead');
    my $l = new_lines(1)->[0] // {};
    is $l->{status}, 502, 'status';
    is $l->{route_id}, 'dead', 'route_id';
    is $l->{upstream_addr}, $dead, 'the node tried';
};

subtest 'client left mid-stream: still one line' => sub {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $sluice->port,
                                  Proto => 'tcp', Timeout => 3) or die $@;
    syswrite $s, "GET /sse?n=10&delay_ms=200 HTTP/1.1\r\nHost: x\r\n\r\n";
    my $buf = '';
    wait_for(sub { sysread($s, $buf, 4096, length $buf); $buf =~ /"seq":1\b/ }, 3);
    close $s;
    my $l = new_lines(1)->[0] // {};
    is $l->{uri}, '/sse?n=10&delay_ms=200', 'the abandoned request is logged';
    is $l->{route_id}, 'sse', 'route_id';
};

subtest 'one line per request' => sub {
    http_req($sluice, 'GET', "/echo/n$_") for 1 .. 10;
    my $lines = new_lines(10);
    is scalar @$lines, 10, 'ten lines';
    is_deeply [ map { $_->{uri} } @$lines ], [ map { "/echo/n$_" } 1 .. 10 ], 'in order';
    sleep 1.2;
    is scalar @{ $sluice->access_log }, $seen, 'no extra lines later';
};

subtest 'buffered lines are written out on a graceful stop' => sub {
    my $other = start_sluice(routes => [
        { id => 'r1', uri => '/echo/*', upstream => { type => 'roundrobin', nodes => { $node => 1 } } } ]);
    http_req($other, 'GET', "/echo/before-stop$_") for 1 .. 3;
    is $other->stop, 0, 'stopped cleanly';
    my $lines = $other->access_log;
    is_deeply [ map { $_->{uri} } @$lines ], [ map { "/echo/before-stop$_" } 1 .. 3 ],
        'all three lines on disk';
};

subtest 'SIGUSR1 reopens the log (rotation)' => sub {
    my $path = $sluice->prefix . '/logs/access.log';
    http_req($sluice, 'GET', '/echo/pre-rotate');
    new_lines(1);
    rename $path, "$path.1" or die "rename: $!";
    $sluice->signal('USR1');
    sleep 0.3;
    http_req($sluice, 'GET', '/echo/post-rotate');
    ok wait_for(sub { -s $path }, 4), 'a new access.log is written';
    my $new = $sluice->access_log;
    is_deeply [ map { $_->{uri} } @$new ], ['/echo/post-rotate'], 'the new line is in the new file';
    my $old = do { local $/; open my $fh, '<', "$path.1"; <$fh> } // '';
    like $old, qr{pre-rotate}, 'the old line stayed in the rotated file';
    unlike $old, qr{post-rotate}, 'nothing new went to the rotated file';
    $seen = @$new;
};

done_testing;
