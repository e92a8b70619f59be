# Plugins that fail or end the request: a throw in rewrite/access gives the client a JSON 500
# and error.log the plugin's name and a traceback, and the worker keeps serving; a throw in
# header_filter, body_filter or log is logged without killing the worker; `return 403,
# {message = "no"}` ends the request with that JSON, a string body is sent as is, a bare
# status gets a JSON error_msg. None of these reach the upstream.
use strict; use warnings; use lib 't/lib'; use Test::More;
use File::Temp qw(tempdir);
use Sluice::Test qw(start_sluice start_mock_llm http_req wait_for);

my $llm = start_mock_llm();
my $node = '127.0.0.1:' . $llm->port;
my $dir = tempdir('sluice-plugins-XXXXXX', TMPDIR => 1, CLEANUP => 1);

my %plugins = (
    'test-throw' => q{
        function _M.access(conf, ctx)
            local t = nil
            if conf.where == "access" then error("boom from access") end
            if conf.where == "index" then return t.field end
        end
        function _M.rewrite(conf, ctx)
            if conf.where == "rewrite" then error("boom from rewrite") end
        end
        local RELAY = { plugin = "test-throw", capture = 1024,
                        done = function() error("boom from relay done") end }
        function _M.header_filter(conf, ctx)
            if conf.where == "header_filter" then error("boom from header_filter") end
            if conf.where == "relay" then ctx.relay = RELAY end
        end
        function _M.body_filter(conf, ctx)
            if conf.where == "body_filter" then error("boom from body_filter") end
        end
        function _M.log(conf, ctx)
            if conf.where == "log" then error("boom from log") end
        end
    },
    'test-after' => q{
        function _M.log(conf, ctx)
            pdk.log.warn("test-after log ran for ", ctx.var.uri)
        end
    },
    'test-deny' => q{
        function _M.access(conf, ctx)
            if conf.mode == "table" then return 403, {message = "no"} end
            if conf.mode == "string" then return 418, "short and stout" end
            if conf.mode == "bare" then return 401 end
            if conf.mode == "exit" then return pdk.response.exit(429, {error_msg = "slow down"}) end
        end
    },
);
for my $name (keys %plugins) {
    open my $fh, '>', "$dir/$name.lua" or die $!;
    my $priority = $name eq 'test-after' ? 900 : 1000;
    print $fh qq{local pdk = require("sluice.pdk")\n}
            . qq|local _M = {name = "$name", version = 1, priority = $priority, |
            . qq|schema = {type = "object"}}\n|
            . $plugins{$name} . "\nreturn _M\n";
    close $fh;
}

my $up = { type => 'roundrobin', nodes => { $node => 1 } };
my @routes = map { { id => "throw-$_", uri => "/echo/throw-$_",
                     plugins => { 'test-throw' => { where => $_ } }, upstream => $up } }
             qw(access index rewrite header_filter body_filter log relay);
$_->{plugins}{'test-after'} = {} for @routes;
push @routes, map { { id => "deny-$_", uri => "/echo/deny-$_",
                      plugins => { 'test-deny' => { mode => $_ } }, upstream => $up } }
              qw(table string bare exit);
push @routes, { id => 'plain', uri => '/echo/plain', upstream => $up };

my $sluice = start_sluice(routes => \@routes,
                          config => { plugins => ['test-throw', 'test-deny', 'test-after'],
                                      plugin_paths => [$dir] });
my ($worker) = $sluice->worker_pids;

sub still_serving {
    my $res = http_req($sluice, 'GET', '/echo/plain');
    is $res->{status}, 200, 'next request served';
    is_deeply [ $sluice->worker_pids ], [$worker], 'same worker, not restarted';
}

for my $phase (qw(access rewrite)) {
    subtest "throw in $phase: JSON 500, name and traceback logged" => sub {
        $llm->clear;
        my $res = http_req($sluice, 'GET', "/echo/throw-$phase");
        is $res->{status}, 500, 'status 500';
        like $res->{headers}{'content-type'} // '', qr{^application/json}, 'JSON';
        ok $res->{json} && defined $res->{json}{error_msg}, 'error_msg';
        unlike $res->{body}, qr/boom|traceback/i, 'no internals in the client body';
        is scalar @{ $llm->requests }, 0, 'nothing upstream';
        ok $sluice->wait_error_log(qr/test-throw.*\Q$phase\E.*boom from $phase/s, 3),
            'error.log names the plugin, phase and error';
        like $sluice->error_log, qr/stack traceback/, 'with a traceback';
        like $sluice->error_log, qr/test-throw\.lua:\d+/, 'pointing into the plugin file';
        still_serving();
    };
}

subtest 'runtime error (index nil) in access' => sub {
    my $res = http_req($sluice, 'GET', '/echo/throw-index');
    is $res->{status}, 500, 'status 500';
    ok $res->{json} && defined $res->{json}{error_msg}, 'JSON error_msg';
    ok $sluice->wait_error_log(qr/test-throw.*attempt to index/s, 3), 'logged';
    still_serving();
};

for my $phase (qw(header_filter body_filter)) {
    subtest "throw in $phase: logged, the response still ends" => sub {
        $llm->clear;
        my $res = http_req($sluice, 'GET', "/echo/throw-$phase", timeout => 5);
        isnt $res->{status}, 599, "a response arrived (status $res->{status})";
        ok !$res->{error} || $res->{complete}, 'the response ended (no hang)';
        cmp_ok $res->{time}, '<', 3, 'promptly';
        ok $sluice->wait_error_log(qr/test-throw.*boom from $phase/s, 3), 'logged with the name';
        still_serving();
    };
}

subtest 'throw in log: the client already has its 200, the next plugin still logs' => sub {
    my $res = http_req($sluice, 'GET', '/echo/throw-log');
    is $res->{status}, 200, 'status 200';
    is $res->{json}{path}, '/echo/throw-log', 'upstream body';
    ok $sluice->wait_error_log(qr/test-throw.*boom from log/s, 3), 'logged';
    ok $sluice->wait_error_log(qr{test-after log ran for /echo/throw-log}, 3),
        'the plugin after the failed one ran its log phase';
    still_serving();
};

subtest 'throw in the relay done callback: the body went out whole, then it is logged' => sub {
    my $res = http_req($sluice, 'GET', '/echo/throw-relay');
    is $res->{status}, 200, 'status 200';
    is $res->{json}{path}, '/echo/throw-relay', 'the whole upstream body';
    ok $sluice->wait_error_log(qr/relay_done of test-throw failed: .*boom from relay done/s, 3),
        'logged with the plugin name';
    ok $sluice->wait_error_log(qr{test-after log ran for /echo/throw-relay}, 3),
        'the log phase ran';
    still_serving();
};

for my $phase (qw(access header_filter)) {
    subtest "throw in $phase: the log phase still runs" => sub {
        ok $sluice->wait_error_log(qr{test-after log ran for /echo/throw-$phase}, 3),
            'the other plugin logged';
    };
}

subtest 'return 403, {message = "no"} from access' => sub {
    $llm->clear;
    my $res = http_req($sluice, 'GET', '/echo/deny-table');
    is $res->{status}, 403, 'status 403';
    like $res->{headers}{'content-type'} // '', qr{^application/json}, 'JSON';
    is_deeply $res->{json}, { message => 'no' }, 'body';
    is scalar @{ $llm->requests }, 0, 'nothing upstream';
};

subtest 'return 418, "string" from access' => sub {
    my $res = http_req($sluice, 'GET', '/echo/deny-string');
    is $res->{status}, 418, 'status';
    like $res->{body}, qr/\Ashort and stout\n?\z/, 'body as is';
};

subtest 'return 401 alone' => sub {
    my $res = http_req($sluice, 'GET', '/echo/deny-bare');
    is $res->{status}, 401, 'status';
    like $res->{headers}{'content-type'} // '', qr{^application/json}, 'JSON';
    ok $res->{json} && defined $res->{json}{error_msg}, 'error_msg';
};

subtest 'return pdk.response.exit(429, {...})' => sub {
    my $res = http_req($sluice, 'GET', '/echo/deny-exit');
    is $res->{status}, 429, 'status';
    is_deeply $res->{json}, { error_msg => 'slow down' }, 'body';
};

subtest 'access log has the plugin-made statuses' => sub {
    my $log = $sluice->wait_access_log(16, 3);
    my %st = map { ($_->{uri} // '') => $_->{status} } @$log;
    is $st{'/echo/deny-table'}, 403, '403 logged';
    is $st{'/echo/throw-access'}, 500, '500 logged';
    is $st{'/echo/throw-rewrite'}, 500, 'a failed rewrite too';
    ok exists $st{"/echo/throw-$_"}, "a line for the throw in $_"
        for qw(header_filter body_filter log relay);
};

done_testing;
