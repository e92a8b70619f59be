# Admin API plugin endpoints: plugins/list (priority order), plugins/{name} (schema,
# consumer schema), plugins/reload (every worker re-loads plugin code; 200 "done", 405 for
# other methods) and schema/validate/{resource}.
use strict; use warnings; use lib 't/lib'; use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use Sluice::Test qw(:all);

my $dir = tempdir(CLEANUP => 1);

sub write_plugin {
    my ($code_tag) = @_;
    open my $fh, '>', "$dir/test-code.lua.tmp" or die;
    print $fh <<LUA;
local ffi = require("ffi")
pcall(ffi.cdef, "int getpid(void);")
return {
    name = "test-code", version = 1, priority = 12,
    schema = { type = "object" },
    access = function(conf, ctx)
        return 200, { pid = ffi.C.getpid(), code = "$code_tag" }
    end,
}
LUA
    close $fh;
    rename "$dir/test-code.lua.tmp", "$dir/test-code.lua" or die;
}

write_plugin('one');
my $sluice = start_sluice(workers => 2, config => { plugin_paths => [$dir],
                                                    plugins => ['test-code', 'key-auth'] });
my @pids;
wait_for(sub { (@pids = $sluice->worker_pids) == 2 }, 5);   # forked after the ports open
my $A = '/apisix/admin';

subtest 'plugins/list: names, highest priority first' => sub {
    my $res = admin_req($sluice, 'GET', "$A/plugins/list");
    is $res->{status}, 200, 'status 200';
    is_deeply $res->{json}, ['key-auth', 'test-code'], 'key-auth (2500) before test-code (12)';
    $res = admin_req($sluice, 'GET', "$A/plugins/list?subsystem=stream");
    is_deeply $res->{json}, [], 'no stream plugins';
};

subtest 'plugins/{name}: the schema' => sub {
    my $res = admin_req($sluice, 'GET', "$A/plugins/key-auth");
    is $res->{status}, 200, 'status 200';
    is $res->{json}{properties}{header}{default}, 'apikey', 'header defaults to apikey';
    is $res->{json}{properties}{query}{default}, 'apikey', 'query defaults to apikey';
    is $res->{json}{properties}{hide_credentials}{default}, JSON::PP::false(), 'hide_credentials';
    $res = admin_req($sluice, 'GET', "$A/plugins/key-auth?schema_type=consumer");
    is_deeply $res->{json}{required}, ['key'], 'consumer schema requires key';
    $res = admin_req($sluice, 'GET', "$A/plugins/no-such");
    is $res->{status}, 404, 'unknown plugin: 404';
    ok defined $res->{json}{error_msg}, 'error_msg';
};

subtest 'plugins/reload: only PUT' => sub {
    for my $m (qw(GET POST DELETE PATCH)) {
        my $res = admin_req($sluice, $m, "$A/plugins/reload");
        is $res->{status}, 405, "$m: 405";
        is $res->{json}{error_msg},
           "please use PUT method to reload the plugins, $m method is not allowed.", 'message';
    }
};

subtest 'plugins/reload: every worker runs the new code within 1 s' => sub {
    is admin_put($sluice, "$A/routes/code", { uri => '/code', plugins => { 'test-code' => {} } })
       ->{status}, 201, 'route';
    ok wait_for(sub { (http_req($sluice, 'GET', '/code')->{json}{code} // '') eq 'one' }, 3),
       'old code answers';

    write_plugin('two');
    my $res = admin_req($sluice, 'PUT', "$A/plugins/reload");
    is $res->{status}, 200, 'status 200';
    is $res->{body}, 'done', 'body "done"';
    my $t0 = time;
    my %seen;
    while (time - $t0 < 3 && keys %seen < @pids) {
        my $r = http_req($sluice, 'GET', '/code', timeout => 2);
        $seen{ $r->{json}{pid} } = 1 if ($r->{json}{code} // '') eq 'two';
    }
    is scalar(keys %seen), scalar @pids, 'both workers run the new code';
    cmp_ok time - $t0, '<=', 1, 'within 1 s';
};

subtest 'reload with a broken plugin keeps the old code' => sub {
    open my $fh, '>', "$dir/test-code.lua" or die;
    print $fh "return {  -- syntax error\n";
    close $fh;
    is admin_req($sluice, 'PUT', "$A/plugins/reload")->{status}, 200, 'reload accepted';
    ok $sluice->wait_error_log(qr/plugin reload failed/, 3), 'failure logged';
    is http_req($sluice, 'GET', '/code')->{json}{code}, 'two', 'still the previous code';
    write_plugin('two');
};

subtest 'schema/validate/{resource}' => sub {
    my $res = admin_req($sluice, 'POST', "$A/schema/validate/routes",
                        { uri => '/a', upstream => { nodes => { 'a:1' => 1 } } });
    is $res->{status}, 200, 'valid route: 200';
    $res = admin_req($sluice, 'POST', "$A/schema/validate/routes", { uri => 5 });
    is $res->{status}, 400, 'invalid route: 400';
    like $res->{json}{error_msg}, qr/property "uri" validation failed/, 'error_msg';
    $res = admin_req($sluice, 'POST', "$A/schema/validate/nope", {});
    is $res->{status}, 404, 'unknown resource: 404';
    $res = admin_req($sluice, 'POST', "$A/schema/validate/routes", '{bad');
    is $res->{status}, 400, 'bad JSON: 400';
    like $res->{json}{error_msg}, qr/^invalid request body/, 'error_msg';
};

done_testing;
