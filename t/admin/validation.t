# Admin API bad input: malformed JSON, wrong types, unknown plugins, plugin schema violations,
# bodies over 16 MiB, references to missing resources and forbidden properties are refused
# with APISIX's status and error_msg, and the store is left as it was.
use strict; use warnings; use lib 't/lib'; use Test::More;
use Sluice::Test qw(:all);

my $sluice = start_sluice();
my $A = '/apisix/admin';
my $up = { type => 'roundrobin', nodes => { '127.0.0.1:1980' => 1 } };
my $store = $sluice->prefix . '/data/store.json';

sub store_bytes { -e $store ? do { local $/; open my $fh, '<', $store or die; <$fh> } : '' }

is admin_put($sluice, "$A/routes/keep", { uri => '/keep', upstream => $up })->{status}, 201,
   'a route to keep';
my $before = store_bytes();
like $before, qr{"\\?/keep"}, 'the store holds it';

sub refused {
    my ($method, $path, $body, $status, $msg, $name) = @_;
    my $res = admin_req($sluice, $method, $path, $body);
    is $res->{status}, $status, "$name: $status";
    if (ref $msg) {
        like $res->{json}{error_msg} // '', $msg, "$name: error_msg";
    }
    else {
        is $res->{json}{error_msg}, $msg, "$name: error_msg";
    }
    like $res->{headers}{'content-type'} // '', qr{application/json}, "$name: JSON";
}

subtest 'malformed JSON' => sub {
    refused('PUT', "$A/routes/1", '{"uri": "/a",', 400, qr/\Ainvalid request body: /,
            'truncated');
    refused('PUT', "$A/routes/1", 'uri=/a', 400, qr/\Ainvalid request body: /, 'form data');
    my $res = admin_req($sluice, 'PUT', "$A/routes/1", '{"uri":');
    is $res->{json}{req_body}, '{"uri":', 'req_body echoes the input as APISIX does';
};

subtest 'wrong types' => sub {
    refused('PUT', "$A/routes/1", { uri => 123, upstream => $up }, 400,
            'invalid configuration: property "uri" validation failed: wrong type: expected '
            . 'string, got number', 'uri as a number');
    refused('PUT', "$A/routes/1", '[1,2]', 400, qr/wrong type: expected object/, 'an array');
    refused('PUT', "$A/routes/1", '"text"', 400, qr/wrong type: expected object/, 'a string');
    refused('PUT', "$A/routes/1", { uri => '/a', methods => ['FETCH'], upstream => $up }, 400,
            'invalid configuration: property "methods" validation failed: failed to validate '
            . 'item 1: matches none of the enum values', 'bad method');
    refused('PUT', "$A/upstreams/1", { nodes => 'x' }, 400, qr/^invalid configuration: /,
            'upstream nodes as a string');
    refused('PUT', "$A/routes/bad!id", { uri => '/a', upstream => $up }, 400,
            qr/property "id" validation failed/, 'bad id characters');
    refused('PUT', "$A/routes/" . ('x' x 65), { uri => '/a', upstream => $up }, 400,
            qr/property "id" validation failed/, 'id longer than 64');
    refused('PUT', "$A/routes/1", undef, 400, 'missing configurations', 'no body');
};

subtest 'plugins' => sub {
    refused('PUT', "$A/routes/1", { uri => '/a', plugins => { 'no-such' => {} } }, 400,
            'unknown plugin [no-such]', 'unknown plugin');
    refused('PUT', "$A/routes/1", { uri => '/a', plugins => { 'key-auth' => { header => 5 } } },
            400, 'failed to check the configuration of plugin key-auth err: property "header" '
            . 'validation failed: wrong type: expected string, got number', 'plugin schema');
    refused('PUT', "$A/consumers", { username => 'c', plugins => { 'key-auth' => {} } }, 400,
            'invalid plugins configuration: failed to check the configuration of plugin '
            . 'key-auth err: property "key" is required', 'consumer schema of the plugin');
    refused('PUT', "$A/global_rules/1", { plugins => { 'key-auth' => 'x' } }, 400,
            'invalid plugin conf "x" for plugin [key-auth]', 'conf not an object');
};

subtest 'references to missing resources' => sub {
    refused('PUT', "$A/routes/1", { uri => '/a', upstream_id => 'nope' }, 400,
            'failed to fetch upstream info by upstream id [nope], response code: 404',
            'upstream_id');
    refused('PUT', "$A/routes/1", { uri => '/a', service_id => 'nope' }, 400,
            'failed to fetch service info by service id [nope], response code: 404',
            'service_id');
    refused('PUT', "$A/routes/1", { uri => '/a', upstream => $up, plugin_config_id => 'nope' },
            400, 'failed to fetch plugin config info by plugin config id [nope], response '
            . 'code: 404', 'plugin_config_id');
    refused('PUT', "$A/services/1", { upstream_id => 'nope' }, 400,
            'failed to fetch upstream info by upstream id [nope], response code: 404',
            'service upstream_id');
    refused('PATCH', "$A/routes/nope", { uri => '/b' }, 404, 'Key not found', 'PATCH missing');
    refused('DELETE', "$A/routes/nope", undef, 404, 'Key not found', 'DELETE missing');
    refused('GET', "$A/routes/nope", undef, 404, 'Key not found', 'GET missing');
};

subtest 'ids, timestamps, duplicates' => sub {
    refused('PUT', "$A/routes/1", { id => '2', uri => '/a', upstream => $up }, 400,
            'wrong route id', 'body id differs from the path');
    refused('POST', "$A/routes", { id => '2', uri => '/a', upstream => $up }, 400,
            'wrong route id, do not need it', 'POST with an id');
    refused('PUT', "$A/routes/1", { uri => '/a', upstream => $up, create_time => 1 }, 400,
            qr/the property is forbidden: +create_time/, 'create_time');
    refused('PUT', "$A/routes/1", { uri => '/a', host => 'a', hosts => ['b'], upstream => $up },
            400, 'only one of host or hosts is allowed', 'host and hosts');
    is admin_put($sluice, "$A/consumers", { username => 'one',
        plugins => { 'key-auth' => { key => 'same' } } })->{status}, 201, 'a consumer';
    $before = store_bytes();
    refused('PUT', "$A/consumers", { username => 'two',
        plugins => { 'key-auth' => { key => 'same' } } }, 400,
        'duplicate key of plugin key-auth found with consumer: one', 'duplicate key');
};

subtest 'oversized body' => sub {
    my $big = '{"uri":"/a","desc":"' . ('x' x (16 * 1024 * 1024)) . '"}';
    my $res = admin_req($sluice, 'PUT', "$A/routes/1", $big, timeout => 30);
    is $res->{status}, 400, 'over 16 MiB: 400';
    my $want = qr/^invalid request body: request size \d+ is greater than the maximum size /;
    like $res->{json}{error_msg}, qr/$want\Q16777216 allowed\E/, 'error_msg';
};

subtest 'unsupported methods and resources' => sub {
    refused('GET', "$A/upstream_groups", undef, 404, 'Unsupported resource type: upstream_groups',
            'a resource APISIX does not have either');
    refused('POST', "$A/consumer_groups", { plugins => {} }, 405,
            'not supported `POST` method for consumer group', 'POST where APISIX refuses it');
    my $res = admin_req($sluice, 'OPTIONS', "$A/routes");
    is $res->{status}, 404, 'OPTIONS: 404';
};

is store_bytes(), $before, 'none of the refused requests touched the store';
my $res = admin_req($sluice, 'GET', "$A/routes");
is $res->{json}{total}, 1, 'only the route kept';

done_testing;
