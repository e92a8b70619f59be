# Reloading: `sluice -s reload` picks up a plugin edited on disk (X-Version 1 -> 2) with no
# failed request and in-flight requests finishing; a rewritten routes file (config.provider
# "file") takes effect within ~2 s without a reload; a broken routes file is rejected, logged,
# and the old routes keep serving. Shared dicts keep their data across the reload. A plugin
# file broken on disk makes the reload fail (logged) and the running workers stay.
use strict; use warnings; use lib 't/lib'; use Test::More;
use File::Temp qw(tempdir);
use POSIX ();
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use Sluice::Test qw(start_sluice start_mock_llm http_req wait_for repo_root);

my $llm = start_mock_llm();
my $node = '127.0.0.1:' . $llm->port;
my $dir = tempdir('sluice-plugins-XXXXXX', TMPDIR => 1, CLEANUP => 1);

sub write_plugin {
    my ($version) = @_;
    open my $fh, '>', "$dir/test-version.lua.tmp" or die $!;
    print $fh <<"LUA";
local pdk = require("sluice.pdk")
local _M = {name = "test-version", version = 1, priority = 1000, schema = {type = "object"}}
function _M.header_filter(conf, ctx) pdk.response.set_header("X-Version", "$version") end
return _M
LUA
    close $fh;
    rename "$dir/test-version.lua.tmp", "$dir/test-version.lua" or die $!;
}

write_plugin(1);
my $route = { id => 'v', uri => '/echo/*', plugins => { 'test-version' => {} },
              upstream => { type => 'roundrobin', nodes => { $node => 1 } } };
my $counter = { id => 'count', uri => '/pdk/shared', plugins => { 'test-pdk' => { mode => 'shared' } },
                upstream => { type => 'roundrobin', nodes => { $node => 1 } } };
my $sluice = start_sluice(workers => 2, routes => [$route, $counter],
                          config => { plugins => ['test-version', 'test-pdk'],
                                      plugin_paths => [$dir, repo_root() . '/t/plugins-fixtures'] });

sub version { http_req($sluice, 'GET', '/echo/v', timeout => 3)->{headers}{'x-version'} // '' }

sub slow_request { Sluice::RawClient::send_get($sluice->port, '/echo/slow?mock_delay_ms=800') }

use Sluice::RawClient qw(read_all);

subtest 'plugin edited on disk: old behaviour until reload, new after' => sub {
    is version(), '1', 'X-Version: 1';
    my @counts = map { http_req($sluice, 'GET', '/pdk/shared')->{json}{count} // 0 } 1 .. 2;
    is_deeply \@counts, [1, 2], 'shared dict counts 1, 2 before the reload';
    write_plugin(2);
    sleep 1.2;
    is version(), '1', 'still 1 without a reload';

    my @slow = map { slow_request() } 1 .. 2;
    sleep 0.1;
    my $workers_before = join ',', $sluice->worker_pids;
    my ($ok, $bad, %seen) = (0, 0);
    my $t0 = time;
    for (1 .. 5) {
        my $res = http_req($sluice, 'GET', '/echo/v', timeout => 3);
        $res->{status} == 200 ? $ok++ : $bad++;
    }
    # a second client hammering in parallel, so requests are in flight at the switch
    my $tally = "$dir/tally";
    my $kid = fork // die "fork: $!";
    if (!$kid) {
        my ($k_ok, $k_bad) = (0, 0);
        my $k_t0 = time;
        while (time - $k_t0 < 2.5) {
            my $res = http_req($sluice, 'GET', '/echo/v', timeout => 3);
            $res->{status} == 200 ? $k_ok++ : $k_bad++;
        }
        open my $fh, '>', $tally;
        print $fh "$k_ok $k_bad\n";
        close $fh;
        POSIX::_exit(0);
    }
    sleep 0.2;
    is $sluice->reload, 0, 'sluice -s reload exits 0';
    my $switched;
    while (time - $t0 < 4) {
        my $res = http_req($sluice, 'GET', '/echo/v', timeout => 3);
        if ($res->{status} == 200) { $ok++ } else { $bad++; diag "failed: $res->{status} $res->{body}" }
        my $v = $res->{headers}{'x-version'} // '';
        $seen{$v}++;
        $switched //= time - $t0 if $v eq '2';
        last if $switched && time - $t0 > $switched + 0.5;
    }
    waitpid $kid, 0;
    my ($k_ok, $k_bad) = split ' ', (do { local $/; open my $fh, '<', $tally; <$fh> } // '0 1');
    is $bad, 0, "no failed request during the reload ($ok served)";
    is $k_bad, 0, "none failed in the parallel client either ($k_ok served)";
    ok $switched, 'X-Version: 2 after the reload';
    cmp_ok $switched // 99, '<', 3, 'within a few seconds';
    is version(), '2', 'and it stays 2';
    is http_req($sluice, 'GET', '/pdk/shared')->{json}{count}, 3,
        'shared dict kept its data across the reload';
    for my $s (@slow) {
        like read_all($s, 4), qr{\AHTTP/1\.1 200 .*X-Version: 1}si,
            'request in flight during the reload completed (old plugin)';
    }
    ok wait_for(sub { (join ',', $sluice->worker_pids) ne $workers_before
                      && $sluice->worker_pids == 2 }, 3), 'new generation of two workers';
};

subtest 'routes file rewritten: takes effect without a reload' => sub {
    $llm->clear;
    is http_req($sluice, 'GET', '/status/201')->{status}, 404, 'no such route yet';
    my $t0 = time;
    $sluice->write_routes([ $route,
        { id => 'new', uri => '/status/*', upstream => { type => 'roundrobin',
          pass_host => 'rewrite', upstream_host => 'new-route', nodes => { $node => 1 } } } ]);
    my $ok = wait_for(sub { http_req($sluice, 'GET', '/status/201')->{status} == 201 }, 4, 0.1);
    my $took = time - $t0;
    ok $ok, 'new route answers';
    cmp_ok $took, '<', 2.5, sprintf('within %.2fs', $took);
    is $llm->last_request->{headers}{host}, 'new-route', 'served by the new route';
    is version(), '2', 'old route still there';
    # every worker polls on its own: wait until all of them have it before moving on
    my $all = wait_for(sub {
        !grep { http_req($sluice, 'GET', '/status/201')->{status} != 201 } 1 .. 8
    }, 3, 0.2);
    ok $all, 'every worker serves the new route';
    sleep 1.1;
};

subtest 'broken routes file: rejected, logged, old routes keep serving' => sub {
    open my $fh, '>', $sluice->prefix . '/conf/routes.json.tmp' or die $!;
    print $fh '{"routes": [ {"id": "v", "uri": ';
    close $fh;
    rename $sluice->prefix . '/conf/routes.json.tmp', $sluice->prefix . '/conf/routes.json' or die $!;
    ok $sluice->wait_error_log(qr/routes\.json|config/i, 4), 'error.log mentions it';
    sleep 1.2;
    is http_req($sluice, 'GET', '/echo/v')->{status}, 200, 'old route still serves';
    is http_req($sluice, 'GET', '/status/201')->{status}, 201, 'second route still serves';

    $sluice->write_routes([ { id => 'bad', uri => 5, upstream => { nodes => {} } } ]);
    my $log_before = length $sluice->error_log;
    ok wait_for(sub { length($sluice->error_log) > $log_before }, 4), 'invalid route logged';
    sleep 1.2;
    is http_req($sluice, 'GET', '/echo/v')->{status}, 200, 'old routes keep serving';
    ok $sluice->alive, 'still running';
};

subtest 'plugin file broken on disk: reload refused, old code keeps serving' => sub {
    $sluice->write_routes([$route]);
    ok wait_for(sub { http_req($sluice, 'GET', '/status/201')->{status} == 404 }, 4, 0.2),
        'routes back to the plugin route only';
    my @workers = $sluice->worker_pids;
    open my $fh, '>', "$dir/test-version.lua" or die $!;
    print $fh "local _M = {name = 'test-version'\nthis is not lua\nreturn _M\n";
    close $fh;
    my $log_len = length $sluice->error_log;
    is $sluice->reload, 0, 'sluice -s reload sent';
    ok wait_for(sub { substr($sluice->error_log, $log_len) =~ /test-version/ }, 4),
        'error.log names the broken plugin';
    sleep 0.5;
    my $res = http_req($sluice, 'GET', '/echo/v');
    is $res->{status}, 200, 'still serving';
    is $res->{headers}{'x-version'}, '2', 'with the last good plugin code';
    is_deeply [ $sluice->worker_pids ], \@workers, 'the running workers were kept';
    ok $sluice->alive, 'master alive';
};

done_testing;
