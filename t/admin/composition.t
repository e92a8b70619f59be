# How resources compose on the data plane, as in APISIX: service_id (upstream, plugins,
# hosts), upstream_id, plugin_config_id, global_rules on every route; precedence
# service < plugin_config < route for plugin confs, route upstream_id/upstream over the
# service's; a change to a shared resource reaches every route using it.
use strict; use warnings; use lib 't/lib'; use Test::More;
use File::Temp qw(tempdir);
use Sluice::Test qw(:all);

my $dir = tempdir(CLEANUP => 1);
for my $p (['test-hdr', 'X-Hdr', 60], ['test-glob', 'X-Glob', 70]) {
    my ($name, $header, $prio) = @$p;
    open my $fh, '>', "$dir/$name.lua" or die;
    print $fh <<LUA;
local pdk = require("sluice.pdk")
return {
    name = "$name", version = 1, priority = $prio,
    schema = { type = "object", properties = { v = { type = "string" } }, required = { "v" } },
    header_filter = function(conf, ctx)
        pdk.response.set_header("$header", conf.v)
    end,
}
LUA
    close $fh;
}

my ($m1, $m2) = (start_mock_llm(), start_mock_llm());
my $sluice = start_sluice(config => { plugin_paths => [$dir],
                                      plugins => ['key-auth', 'test-hdr', 'test-glob'] });
my $A = '/apisix/admin';

sub put_ok {
    my ($path, $body) = @_;
    my $res = admin_put($sluice, "$A/$path", $body);
    ok $res->{status} == 200 || $res->{status} == 201, "PUT $path" or diag $res->{body};
}

sub up { { type => 'roundrobin', nodes => { '127.0.0.1:' . $_[0]->port => 1 } } }

put_ok('upstreams/u1', up($m1));
put_ok('upstreams/u2', up($m2));
put_ok('services/s1', { upstream_id => 'u1', plugins => { 'test-hdr' => { v => 'service' } } });
put_ok('services/s2', { upstream => up($m2), hosts => ['svc.example'] });
put_ok('plugin_configs/pc1', { plugins => { 'test-hdr' => { v => 'pc' } } });
put_ok('routes/r1', { uri => '/static.json', service_id => 's1' });
put_ok('routes/r2', { uri => '/r2', service_id => 's1',
                      plugins => { 'test-hdr' => { v => 'route' } } });
put_ok('routes/r3', { uri => '/r3', service_id => 's1', plugin_config_id => 'pc1' });
put_ok('routes/r4', { uri => '/r4', service_id => 's1', plugin_config_id => 'pc1',
                      plugins => { 'test-hdr' => { v => 'route' } } });
put_ok('routes/r5', { uri => '/r5', service_id => 's1', upstream_id => 'u2' });
put_ok('routes/r6', { uri => '/r6', upstream_id => 'u2' });
put_ok('routes/r7', { uri => '/r7', service_id => 's2' });

sub get {
    my ($path, %o) = @_;
    $_->clear for $m1, $m2;
    my $res = http_req($sluice, 'GET', $path, %o);
    $res->{mock} = @{ $m1->requests } ? 'm1' : @{ $m2->requests } ? 'm2' : 'none';
    return $res;
}

subtest 'service_id: the service upstream (by upstream_id) and plugins' => sub {
    my $res = get('/static.json');
    is $res->{mock}, 'm1', 'upstream u1 of s1';
    is $res->{headers}{'x-hdr'}, 'service', "the service's plugin";
};

subtest 'precedence: service < plugin_config < route' => sub {
    is get('/r2')->{headers}{'x-hdr'}, 'route', 'route over service';
    is get('/r3')->{headers}{'x-hdr'}, 'pc', 'plugin_config over service';
    is get('/r4')->{headers}{'x-hdr'}, 'route', 'route over plugin_config';
};

subtest 'upstream_id' => sub {
    is get('/r5')->{mock}, 'm2', "the route's upstream_id over the service's upstream";
    is get('/r6')->{mock}, 'm2', 'upstream_id alone';
};

subtest 'service hosts apply to its routes' => sub {
    is get('/r7', headers => { Host => 'svc.example' })->{mock}, 'm2', 'matching host';
    is get('/r7', headers => { Host => 'other.example' })->{status}, 404, 'other host: 404';
};

subtest 'global rules run on every route' => sub {
    put_ok('global_rules/g1', { plugins => { 'test-glob' => { v => 'global' } } });
    ok wait_for(sub { (get('/r6')->{headers}{'x-glob'} // '') eq 'global' }, 1),
       'route without plugins';
    is get('/r2')->{headers}{'x-glob'}, 'global', 'route with plugins';
    is get('/r2')->{headers}{'x-hdr'}, 'route', 'and its own plugins still run';
    is get('/r7', headers => { Host => 'svc.example' })->{headers}{'x-glob'}, 'global',
       'route of a service';

    put_ok('global_rules/g2', { plugins => { 'key-auth' => {} } });
    ok wait_for(sub { get('/r6')->{status} == 401 }, 1), 'a global key-auth guards every route';
    is admin_req($sluice, 'DELETE', "$A/global_rules/g2")->{status}, 200, 'removed';
    ok wait_for(sub { get('/r6')->{status} != 401 }, 1), 'open again';

    my $res = admin_put($sluice, "$A/global_rules/g3",
                        { plugins => { 'test-glob' => { v => 'x' } } });
    is $res->{status}, 400, 'a plugin in two global rules is refused';
    is $res->{json}{error_msg}, "plugin 'test-glob' already exists in global rule with id 'g1'",
       'message';
};

subtest 'a change to a shared resource reaches its routes' => sub {
    is admin_req($sluice, 'PATCH', "$A/services/s1/plugins/test-hdr/v", '"service-2"')->{status},
       200, 'PATCH the service';
    ok wait_for(sub { (get('/static.json')->{headers}{'x-hdr'} // '') eq 'service-2' }, 1),
       'r1 sees it';
    is get('/r2')->{headers}{'x-hdr'}, 'route', 'r2 keeps its own';
    put_ok('upstreams/u1', up($m2));
    ok wait_for(sub { get('/static.json')->{mock} eq 'm2' }, 1), 'upstream u1 moved to m2';
    put_ok('plugin_configs/pc1', { plugins => { 'test-hdr' => { v => 'pc-2' } } });
    ok wait_for(sub { (get('/r3')->{headers}{'x-hdr'} // '') eq 'pc-2' }, 1), 'r3 sees pc-2';
};

done_testing;
