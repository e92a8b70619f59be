# Consumer credentials (/apisix/admin/consumers/{username}/credentials/{id}), as APISIX 3.x:
# envelopes and messages of apisix/admin/credentials.lua and t/admin/credentials.t; only auth
# plugins; the consumer must exist; keys sealed at rest; a credential's key-auth key
# authenticates as its consumer (consumer_name, the consumer's plugins, X-Credential-Identifier);
# deleting the consumer deletes its credentials.
use strict; use warnings; use lib 't/lib'; use Test::More;
use File::Temp qw(tempdir);
use Sluice::Test qw(:all);

# test-set-header: sets a request header in access (not an auth plugin)
my $dir = tempdir(CLEANUP => 1);
open my $fh, '>', "$dir/test-set-header.lua" or die;
print $fh <<'LUA';
local pdk = require("sluice.pdk")
return {
    name = "test-set-header", version = 1, priority = 100,
    schema = { type = "object", properties = { value = { type = "string" } },
               required = { "value" } },
    access = function(conf, ctx) pdk.request.set_header(ctx, "X-Who", conf.value) end,
}
LUA
close $fh;

my $llm = start_mock_llm();
my $sluice = start_sluice(config => { data_encryption => { keyring => ['qeddd145sfvddff3'] },
                                      plugin_paths => [$dir],
                                      plugins => ['key-auth', 'test-set-header'] });
my $A = '/apisix/admin';
my $C = "$A/consumers/jack/credentials";
my $store = $sluice->prefix . '/data/store.json';
my $up = { type => 'roundrobin', nodes => { '127.0.0.1:' . $llm->port => 1 } };

sub raw_store { do { local $/; open my $f, '<', $store or die "$store: $!"; <$f> } }
sub req { admin_req($sluice, @_) }
sub get { http_req($sluice, 'GET', @_) }

subtest 'the consumer must exist' => sub {
    my $res = admin_put($sluice, "$C/a", { plugins => { 'key-auth' => { key => 'k-a' } } });
    is $res->{status}, 404, 'status 404';
    is $res->{json}{error_msg}, 'consumer not found', 'error_msg';
    $res = req('GET', $C);
    is $res->{status}, 404, 'listing the credentials of no consumer: 404';
    is $res->{json}{message}, 'Key not found', 'Key not found';
};

is admin_put($sluice, "$A/consumers", { username => 'jack', labels => { custom_id => 'j1' },
    plugins => { 'test-set-header' => { value => 'jack' } } })
   ->{status}, 201, 'consumer jack, no key of its own';
is admin_put($sluice, "$A/routes/1", { uri => '/static.json', upstream => $up,
    plugins => { 'key-auth' => {} } })->{status}, 201, 'route with key-auth';

subtest 'PUT, GET, list' => sub {
    my $res = admin_put($sluice, "$C/cred-a", { desc => 'key-auth for jack',
        plugins => { 'key-auth' => { key => 'jack-cred-key-a' } } });
    is $res->{status}, 201, 'created: 201';
    is $res->{json}{key}, '/apisix/consumers/jack/credentials/cred-a', 'envelope key';
    is $res->{json}{value}{id}, 'cred-a', 'value.id is the credential id';
    is $res->{json}{value}{plugins}{'key-auth'}{key}, 'jack-cred-key-a', 'key given back clear';
    ok $res->{json}{value}{create_time}, 'create_time';

    $res = admin_put($sluice, $C, { id => 'cred-b',
        plugins => { 'key-auth' => { key => 'jack-cred-key-b' } } });
    is $res->{status}, 201, 'id in the body (PUT .../credentials)';
    is $res->{json}{key}, '/apisix/consumers/jack/credentials/cred-b', 'its key';

    $res = admin_put($sluice, "$C/cred-a", { desc => 'new description',
        plugins => { 'key-auth' => { key => 'jack-cred-key-a' } } });
    is $res->{status}, 200, 'replaced: 200';

    $res = req('GET', "$C/cred-a");
    is $res->{status}, 200, 'GET one';
    is $res->{json}{value}{desc}, 'new description', 'desc';
    is $res->{json}{value}{plugins}{'key-auth'}{key}, 'jack-cred-key-a', 'key clear in GET';

    $res = req('GET', $C);
    is $res->{json}{total}, 2, 'list: 2';
    is_deeply [map { $_->{key} } @{ $res->{json}{list} }],
              ['/apisix/consumers/jack/credentials/cred-a',
               '/apisix/consumers/jack/credentials/cred-b'], 'list keys';

    $res = req('GET', "$A/consumers");
    is $res->{json}{total}, 1, 'the consumer list holds no credential';

    my $raw = raw_store();
    unlike $raw, qr/jack-cred-key/, 'credential keys are sealed in store.json';
};

subtest 'refused before storage, with APISIX messages' => sub {
    my $before = raw_store();
    my @cases = (
        [ 'PUT', $C, { plugins => { 'key-auth' => { key => 'x' } } }, 400,
          'missing credential id' ],
        [ 'PUT', "$C/c1", { id => 'c2', plugins => {} }, 400, 'wrong credential id' ],
        [ 'PUT', "$C/c1", { plugins => { 'test-set-header' => { value => 'x' } } }, 400,
          'only supports auth type plugins in consumer credential' ],
        [ 'PUT', "$C/c1", { plugins => { 'key-auth' => { key => 'x' },
                                         'test-set-header' => {} } }, 400,
          'invalid configuration: property "plugins" validation failed: '
          . 'expect object to have at most 1 properties' ],
        [ 'PUT', "$C/c1", { plugins => { 'key-auth' => {} } }, 400,
          qr/^invalid plugins configuration: failed to check the configuration of plugin key-auth err: / ],
        [ 'PUT', "$C/c1", { plugins => { nope => {} } }, 400,
          'invalid plugins configuration: unknown plugin [nope]' ],
        [ 'PUT', "$C/c1", { plugins => { 'key-auth' => { key => 'jack-cred-key-b' } } }, 400,
          'duplicate key of plugin key-auth found with credential: cred-b of consumer: jack' ],
        [ 'POST', $C, { plugins => { 'key-auth' => { key => 'p' } } }, 405,
          'not supported `POST` method for credential' ],
        [ 'PATCH', "$C/cred-a", { desc => 'x' }, 405,
          'not supported `PATCH` method for credential' ],
    );
    for my $c (@cases) {
        my ($m, $path, $body, $status, $msg) = @$c;
        my $res = req($m, $path, $body);
        is $res->{status}, $status, "$m $path: $status";
        if (ref $msg) { like $res->{json}{error_msg}, $msg, 'error_msg' }
        else          { is $res->{json}{error_msg}, $msg, "error_msg: $msg" }
    }

    my $res = admin_put($sluice, "$A/consumers", { username => 'bob',
        plugins => { 'key-auth' => { key => 'jack-cred-key-a' } } });
    is $res->{status}, 400, 'a consumer reusing a credential key: 400';
    is $res->{json}{error_msg},
       'duplicate key of plugin key-auth found with credential: cred-a of consumer: jack',
       'error_msg';
    is raw_store(), $before, 'the store is untouched';
};

subtest "a credential's key authenticates as its consumer" => sub {
    $llm->clear;
    my $res = get('/static.json', headers => { apikey => 'jack-cred-key-a' });
    is $res->{status}, 200, 'proxied';
    my $seen = $llm->last_request->{headers};
    is $seen->{'x-consumer-username'}, 'jack', 'X-Consumer-Username upstream';
    is $seen->{'x-credential-identifier'}, 'cred-a', 'X-Credential-Identifier upstream';
    is $seen->{'x-consumer-custom-id'}, 'j1', 'X-Consumer-Custom-ID from the labels';
    is $seen->{'x-who'}, 'jack', "the consumer's own plugins ran";
    is get('/static.json?apikey=jack-cred-key-b')->{status}, 200, 'the other credential too';
    is get('/static.json', headers => { apikey => 'nope' })->{status}, 401, 'a wrong key: 401';

    my $log = $sluice->wait_access_log(2);
    my @jack = grep { ($_->{consumer} // '') eq 'jack' } @$log;
    ok scalar @jack >= 2, 'the access log names jack';
};

subtest 'DELETE a credential; DELETE the consumer takes the rest' => sub {
    my $res = req('DELETE', "$C/cred-b");
    is $res->{status}, 200, 'DELETE cred-b';
    is $res->{json}{key}, '/apisix/consumers/jack/credentials/cred-b', 'its key';
    is req('DELETE', "$C/cred-b")->{status}, 404, 'again: 404';
    ok wait_for(sub { get('/static.json?apikey=jack-cred-key-b')->{status} == 401 }, 2),
       'its key stops working';
    is get('/static.json?apikey=jack-cred-key-a')->{status}, 200, 'the other still works';

    is req('DELETE', "$A/consumers/jack")->{status}, 200, 'DELETE jack';
    $res = req('GET', $C);
    is $res->{status}, 404, 'no credentials left';
    unlike raw_store(), qr/cred-a/, 'none in the store';
    ok wait_for(sub { get('/static.json?apikey=jack-cred-key-a')->{status} == 401 }, 2),
       'the key stops working';
    is admin_put($sluice, "$A/consumers", { username => 'jack' })->{status}, 201,
       'jack again';
    is req('GET', "$C/cred-a")->{status}, 404, 'without his old credentials';
};

done_testing;
