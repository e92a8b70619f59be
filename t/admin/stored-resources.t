# secrets/{manager}/{id}, protos/{id} and stream_routes/{id}: stored and checked with APISIX's
# schemas and messages so migration scripts that PUT them succeed (nothing on the data plane
# uses them); secret values are sealed at rest with a keyring.
use strict; use warnings; use lib 't/lib'; use Test::More;
use Sluice::Test qw(:all);

my $sluice = start_sluice(config => { data_encryption => { keyring => ['qeddd145sfvddff3'] } });
my $A = '/apisix/admin';
my $store = $sluice->prefix . '/data/store.json';

sub req { admin_req($sluice, @_) }
sub raw_store { do { local $/; open my $f, '<', $store or die "$store: $!"; <$f> } }

sub refused {
    my ($m, $path, $body, $status, $msg) = @_;
    my $res = req($m, $path, $body);
    is $res->{status}, $status, "$m $path: $status";
    if (ref $msg) { like $res->{json}{error_msg} // '', $msg, "error_msg like $msg" }
    else          { is $res->{json}{error_msg}, $msg, "error_msg: $msg" }
}

subtest 'secrets' => sub {
    my $res = admin_put($sluice, "$A/secrets/vault/1", { uri => 'http://127.0.0.1:8200',
        prefix => 'kv/apisix', token => 'vault-token-secret-91' });
    is $res->{status}, 201, 'vault: 201';
    is $res->{json}{key}, '/apisix/secrets/vault/1', 'key';
    is $res->{json}{value}{id}, 'vault/1', 'value.id is manager/id, as APISIX';
    is admin_put($sluice, "$A/secrets/aws/a", { access_key_id => 'AKIA1',
        secret_access_key => 'aws-secret-key-22' })->{status}, 201, 'aws';
    is admin_put($sluice, "$A/secrets/gcp/g", { auth_config => { client_email => 'a@b.c',
        private_key => 'gcp-private-key-33', project_id => 'p' } })->{status}, 201, 'gcp';

    $res = req('GET', "$A/secrets/vault/1");
    is $res->{status}, 200, 'GET';
    is $res->{json}{value}{token}, 'vault-token-secret-91', 'the token in clear';
    is req('GET', "$A/secrets")->{json}{total}, 3, 'list all';
    is req('GET', "$A/secrets/aws")->{json}{total}, 1, 'list one manager';
    $res = req('PATCH', "$A/secrets/vault/1", { namespace => 'ns' });
    is $res->{status}, 200, 'PATCH';
    is $res->{json}{value}{namespace}, 'ns', 'patched';

    my $raw = raw_store();
    unlike $raw, qr/vault-token-secret|aws-secret-key|gcp-private-key/, 'sealed in store.json';
    like $raw, qr/AKIA1/, 'the rest is readable';

    refused('PUT', "$A/secrets/foo/1", { a => 1 }, 400, 'invalid secret manager: foo');
    refused('PUT', "$A/secrets/vault/2", { uri => 'http://127.0.0.1:8200', prefix => 'x' },
            400, 'invalid configuration: property "token" is required');
    refused('PUT', "$A/secrets/aws/2", { access_key_id => 'x' }, 400,
            'invalid configuration: property "secret_access_key" is required');
    refused('PUT', "$A/secrets/gcp/2", {}, 400, qr/^invalid configuration: /);
    refused('PUT', "$A/secrets/vault", { token => 'x' }, 400, 'missing secret id');
    refused('POST', "$A/secrets", { token => 'x' }, 405,
            'not supported `POST` method for secret');
    is req('DELETE', "$A/secrets/aws/a")->{status}, 200, 'DELETE';
    is req('GET', "$A/secrets/aws/a")->{status}, 404, 'gone';
};

subtest 'protos' => sub {
    my $content = 'syntax = "proto3"; package helloworld; message HelloRequest { string name = 1; }';
    my $res = admin_put($sluice, "$A/protos/1", { content => $content });
    is $res->{status}, 201, 'PUT: 201';
    is $res->{json}{key}, '/apisix/protos/1', 'key';
    is req('GET', "$A/protos/1")->{json}{value}{content}, $content, 'GET';
    $res = req('POST', "$A/protos", { content => $content });
    is $res->{status}, 201, 'POST: 201';
    refused('PUT', "$A/protos/2", { desc => 'x' }, 400,
            'invalid configuration: property "content" is required');
    refused('PATCH', "$A/protos/1", { desc => 'x' }, 405,
            'not supported `PATCH` method for proto');
    is admin_put($sluice, "$A/routes/g", { uri => '/g', plugins => {},
        upstream => { type => 'roundrobin', nodes => { '127.0.0.1:1' => 1 } } })->{status}, 201,
       'a route';
    is req('DELETE', "$A/protos/1")->{status}, 200, 'DELETE';
};

subtest 'stream_routes' => sub {
    my $up = { type => 'roundrobin', nodes => { '127.0.0.1:1995' => 1 } };
    my $res = admin_put($sluice, "$A/stream_routes/1", { server_addr => '127.0.0.1',
        server_port => 2000, remote_addr => '127.0.0.0/24', upstream => $up });
    is $res->{status}, 201, 'PUT: 201';
    is $res->{json}{key}, '/apisix/stream_routes/1', 'key';
    is req('GET', "$A/stream_routes")->{json}{total}, 1, 'list';
    is admin_put($sluice, "$A/upstreams/u1", $up)->{status}, 201, 'an upstream';
    is admin_put($sluice, "$A/stream_routes/2", { upstream_id => 'u1' })->{status}, 201,
       'by upstream_id';
    refused('PUT', "$A/stream_routes/3", { upstream_id => 'nope' }, 400,
            'failed to fetch upstream info by upstream id [nope], response code: 404');
    refused('PUT', "$A/stream_routes/3", { server_port => 70000, upstream => $up }, 400,
            qr/^invalid configuration: property "server_port" validation failed/);
    refused('PUT', "$A/stream_routes/3", { remote_addr => 'not-an-ip', upstream => $up }, 400,
            qr/^invalid configuration: property "remote_addr" validation failed/);
    refused('PATCH', "$A/stream_routes/1", { desc => 'x' }, 405,
            'not supported `PATCH` method for stream route');
    is req('DELETE', "$A/stream_routes/2")->{status}, 200, 'DELETE';
    is admin_put($sluice, "$A/stream_routes/10",
                 { protocol => { name => 'redis' }, upstream => $up })->{status}, 201, 'superior';
    is admin_put($sluice, "$A/stream_routes/11",
                 { protocol => { name => 'redis', superior_id => '10' }, upstream => $up })
       ->{status}, 201, 'subordinate';
    refused('DELETE', "$A/stream_routes/10", undef, 400,
            'can not delete this stream route directly, stream route [11] is still using it as '
            . 'superior_id');
    is req('DELETE', "$A/stream_routes/11")->{status}, 200, 'the subordinate goes';
    is req('DELETE', "$A/stream_routes/10")->{status}, 200, 'then the superior';
};

done_testing;
