# Process behaviours: a killed worker is replaced at once while traffic keeps flowing;
# -t checks a configuration (exit 1 and a one-line reason when broken); -v prints versions;
# a start that cannot bind exits non-zero with a reason; SIGQUIT drains an in-flight request
# and exits 0 (streams too; idle keep-alive connections are closed at once, the in-flight one
# gets Connection: close); SIGTERM exits at once.
use strict; use warnings; use lib 't/lib'; use Test::More;
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use Sluice::Test qw(start_sluice start_mock_llm http_req wait_for sluice_bin repo_root);

my $llm = start_mock_llm();
my $routes = [ { id => 'all', uri => '/*',
                 upstream => { type => 'roundrobin',
                               nodes => { '127.0.0.1:' . $llm->port => 1 } } } ];

subtest 'SIGKILL a worker: replaced within a second, no failed request' => sub {
    my $sluice = start_sluice(workers => 2, routes => $routes);
    ok wait_for(sub { $sluice->worker_pids == 2 }, 3), 'two workers';
    my @before = $sluice->worker_pids;
    sleep 0.3;      # let both workers finish starting up
    my ($ok, $bad, $killed_at, $replaced_at) = (0, 0);
    my $t0 = time;
    while (time - $t0 < 2) {
        my $res = http_req($sluice, 'GET', '/echo/loop', timeout => 3);
        $res->{status} == 200 ? $ok++ : $bad++;
        diag "request failed: $res->{status} " . ($res->{error} // '') if $res->{status} != 200;
        if (!$killed_at && time - $t0 > 0.4) {
            kill 'KILL', $before[0];
            $killed_at = time;
        }
        if ($killed_at && !$replaced_at) {
            my @now = $sluice->worker_pids;
            $replaced_at = time if @now == 2 && !grep { $_ == $before[0] } @now;
        }
    }
    cmp_ok $ok, '>', 20, "$ok requests served";
    is $bad, 0, 'no request failed around the kill';
    ok $replaced_at, 'a new worker appeared';
    cmp_ok $replaced_at ? $replaced_at - $killed_at : 99, '<', 1.2, 'within about a second';
    my @after = $sluice->worker_pids;
    is scalar @after, 2, 'two workers again';
    ok((grep { $_ == $before[1] } @after), 'the other worker was left alone');
    ok $sluice->alive, 'master alive';
    ok $sluice->wait_error_log(qr/worker $before[0] exited on signal 9/, 2),
        'error.log records the dead worker';
};

subtest '-t with a broken config: exit 1, one-line reason' => sub {
    my $sluice = start_sluice(routes => $routes, config => { workers => 'lots' },
                              args => ['-t'], expect_exit => 1);
    is $sluice->exit_status, 1, 'exit 1';
    my @lines = grep { /\S/ } split /\n/, $sluice->stderr;
    is scalar @lines, 1, 'one line on stderr' or diag $sluice->stderr;
    like $lines[0] // '', qr/workers/, 'it names the problem';
};

subtest '-t with a broken routes file: exit 1' => sub {
    my $sluice = start_sluice(routes => $routes, args => ['-t'], expect_exit => 1,
        files => { 'conf/routes.json' => '{"routes": [ {"id": "x", "uri": 5} ]}' });
    is $sluice->exit_status, 1, 'exit 1';
    my @lines = grep { /\S/ } split /\n/, $sluice->stderr;
    is scalar @lines, 1, 'one line on stderr' or diag $sluice->stderr;
};

subtest '-t with a good config: exit 0' => sub {
    my $sluice = start_sluice(routes => $routes, args => ['-t'], expect_exit => 1);
    is $sluice->exit_status, 0, 'exit 0' or diag $sluice->stderr;
};

subtest '-v prints the versions' => sub {
    my $bin = sluice_bin();
    my $out = `$bin -v 2>&1`;
    is $? >> 8, 0, 'exit 0';
    like $out, qr{sluice/\d+\.\d+}, 'sluice version';
    like $out, qr/LuaJIT \d/, 'LuaJIT';
    like $out, qr/libevent \d/, 'libevent';
    like $out, qr/OpenSSL \d/, 'OpenSSL';
    like $out, qr/libcurl \d/, 'libcurl';
    like $out, qr/PCRE2 \d/, 'PCRE2';
};

subtest 'port in use: exit non-zero with a reason' => sub {
    my $busy = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 5,
                                     Proto => 'tcp') or die "listen: $@";
    my $sluice = start_sluice(routes => $routes, port => $busy->sockport, expect_exit => 1);
    isnt $sluice->exit_status, 0, 'non-zero exit';
    like $sluice->stderr, qr/in use|bind/i, 'says the address is in use';
};

sub start_slow_request { Sluice::RawClient::send_get($_[0]->port, $_[1]) }

use Sluice::RawClient qw(read_all);

subtest 'SIGQUIT drains an in-flight request, then exits 0' => sub {
    my $sluice = start_sluice(workers => 2, routes => $routes);
    $llm->clear;
    my $s = start_slow_request($sluice, '/delay/1500');
    ok wait_for(sub { @{ $llm->requests } >= 1 }, 2), 'request reached the upstream';
    my $t0 = time;
    $sluice->signal('QUIT');
    my $got = read_all($s, 5);
    like $got, qr{\AHTTP/1\.1 200 }, 'in-flight request completed with 200';
    cmp_ok time - $t0, '>=', 1.0, 'it did wait for the upstream';
    my $code = $sluice->wait_exit(5);
    is $code, 0, 'exit 0 after draining';
    is scalar $sluice->worker_pids, 0, 'no workers left';
    my ($r) = grep { $_->{path} eq '/delay/1500' } @{ $llm->responses };
    is $r && $r->{outcome}, 'complete', 'upstream response completed';
};

subtest 'SIGQUIT drains a stream too' => sub {
    my $sluice = start_sluice(routes => $routes);
    my $s = start_slow_request($sluice, '/sse?n=4&delay_ms=300');
    sleep 0.2;
    $sluice->signal('QUIT');
    my $got = read_all($s, 5);
    my @seq = $got =~ /"seq":(\d+)/g;
    is_deeply \@seq, [1 .. 4], 'all four events delivered';
    like $got, qr/0\r\n\r\n\z/, 'chunked stream terminated';
    is $sluice->wait_exit(5), 0, 'exit 0';
};

subtest 'SIGQUIT: idle keep-alive connections closed, in-flight one told to close' => sub {
    my $sluice = start_sluice(routes => $routes);
    # an idle keep-alive connection (keepalive_timeout is 75 s by default)
    my $idle = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $sluice->port,
                                     Proto => 'tcp', Timeout => 3) or die $@;
    syswrite $idle, "GET /echo/idle HTTP/1.1\r\nHost: x\r\n\r\n";
    my $first = '';
    my $sel = IO::Select->new($idle);
    while ($first !~ /\r\n\r\n.*\}/s && $sel->can_read(3)) { sysread($idle, $first, 4096, length $first) or last }
    like $first, qr{\AHTTP/1\.1 200 }, 'idle connection had one response';
    # a keep-alive connection with a request in flight
    my $busy = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $sluice->port,
                                     Proto => 'tcp', Timeout => 3) or die $@;
    syswrite $busy, "GET /delay/800 HTTP/1.1\r\nHost: x\r\n\r\n";
    sleep 0.2;
    my $t0 = time;
    $sluice->signal('QUIT');
    my $rest = read_all($idle, 3);
    my $idle_closed = time - $t0;
    is $rest, '', 'idle connection closed without a response';
    cmp_ok $idle_closed, '<', 1.5, sprintf('promptly (%.2fs)', $idle_closed);
    my $got = read_all($busy, 4);
    like $got, qr{\AHTTP/1\.1 200 }, 'in-flight request completed';
    like $got, qr{^Connection: close\r$}mi, 'with Connection: close';
    my $code = $sluice->wait_exit(4);
    is $code, 0, 'exit 0';
    cmp_ok time - $t0, '<', 2.5, 'exited soon after the last request';
};

subtest 'SIGTERM exits at once' => sub {
    my $sluice = start_sluice(routes => $routes);
    my $s = start_slow_request($sluice, '/delay/3000');
    sleep 0.3;
    my $t0 = time;
    $sluice->signal('TERM');
    my $code = $sluice->wait_exit(5);
    cmp_ok time - $t0, '<', 1.5, 'did not wait for the in-flight request';
    is $code, 0, 'exit 0';
};

done_testing;
