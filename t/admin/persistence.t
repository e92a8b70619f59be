# The store outlives the gateway: resources written through the Admin API are in
# DIR/data/store.json (written atomically: no temporary file left behind) and are served
# again, with the same ids, indexes and timestamps, after a stop and start.
use strict; use warnings; use lib 't/lib'; use Test::More;
use JSON::PP ();
use Sluice::Test qw(:all);

my $llm = start_mock_llm();
my $sluice = start_sluice();
my $A = '/apisix/admin';
my $store = $sluice->prefix . '/data/store.json';
my $up = { type => 'roundrobin', nodes => { '127.0.0.1:' . $llm->port => 1 } };

my @order = qw(upstreams/u1 services/s1 plugin_configs/p1 routes/r1 routes/r2 consumers/jack);
my %written = (
    'upstreams/u1'      => $up,
    'services/s1'       => { upstream_id => 'u1', plugins => {} },
    'plugin_configs/p1' => { plugins => { 'key-auth' => {} } },
    'routes/r1'         => { uri => '/v1/chat/completions', service_id => 's1' },
    'routes/r2'         => { uri => '/r2', upstream => $up, plugin_config_id => 'p1' },
    'consumers/jack'    => { username => 'jack', plugins => { 'key-auth' => { key => 'jk' } } },
);
my %before;

subtest 'write' => sub {
    for my $path (@order) {
        my $body = $written{$path};
        my $p = $path =~ /^consumers/ ? "$A/consumers" : "$A/$path";
        my $res = admin_put($sluice, $p, $body);
        is $res->{status}, 201, "PUT $path";
    }
    for my $path (sort keys %written) {
        $before{$path} = admin_req($sluice, 'GET', "$A/$path")->{json};
    }
    ok -s $store, 'store.json exists';
    my $doc = eval { JSON::PP::decode_json(do { local $/; open my $f, '<', $store or die; <$f> }) };
    ok $doc && $doc->{routes}{r1}, 'store.json is JSON and holds the routes';
    my @tmp = glob($sluice->prefix . '/data/store.json.tmp*');
    is scalar @tmp, 0, 'no temporary file left';
    post_json($sluice, '/v1/chat/completions', { messages => [] });
    is $llm->last_request->{path}, '/v1/chat/completions', 'r1 served before the restart';
    $llm->clear;
};

subtest 'stop and start: everything is back' => sub {
    is $sluice->stop, 0, 'clean stop';
    $sluice->start;
    for my $path (sort keys %written) {
        my $res = admin_req($sluice, 'GET', "$A/$path");
        is $res->{status}, 200, "GET $path";
        is_deeply $res->{json}, $before{$path}, "$path unchanged (value, indexes, times)";
    }
    my $res = http_req($sluice, 'GET', '/r2');
    is $res->{status}, 401, 'r2 still needs a key (plugin_config_id resolved)';
    $res = http_req($sluice, 'GET', '/r2', headers => { apikey => 'jk' });
    isnt $res->{status}, 401, 'and jack is still a consumer';
    $res = http_req($sluice, 'POST', '/v1/chat/completions', body => { messages => [] });
    is $llm->last_request->{path}, '/v1/chat/completions', 'r1 reaches the upstream of s1/u1';
};

subtest 'writes after the restart continue the indexes' => sub {
    my $last = 0;
    for my $path (keys %before) {
        my $m = $before{$path}{modifiedIndex};
        $last = $m if $m > $last;
    }
    my $res = admin_put($sluice, "$A/routes/r3", { uri => '/r3', upstream => $up });
    is $res->{status}, 201, 'PUT';
    cmp_ok $res->{json}{createdIndex}, '>', $last, 'index above every earlier one';
    $res = admin_req($sluice, 'POST', "$A/routes", { uri => '/r4', upstream => $up });
    is $res->{status}, 201, 'POST';
    ok !exists $before{"routes/$res->{json}{value}{id}"}, 'a new id';
};

subtest 'a restart with SIGKILL (no graceful stop) loses nothing acknowledged' => sub {
    my $n = admin_req($sluice, 'GET', "$A/routes")->{json}{total};
    my $pgid = $sluice->pid;
    kill 'KILL', -$pgid;
    $sluice->wait_exit(5);
    wait_for(sub { !kill 0, -$pgid }, 5);      # the workers too (they hold the ports)
    $sluice->start;
    my $res;
    wait_for(sub { $res = admin_req($sluice, 'GET', "$A/routes"); $res->{status} == 200 }, 10);
    is $res->{json}{total}, $n, 'same routes';
};

done_testing;
