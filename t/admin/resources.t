# Admin API resources: for routes, services, upstreams, consumers, plugin_configs,
# global_rules, plugin_metadata/{plugin} and ssls the verbs APISIX has (GET list, GET one,
# PUT create/replace, POST with a generated id, PATCH merge and PATCH of a sub-path, DELETE and
# DELETE ?force=true of a resource still in use), the v3 envelopes and the statuses.
use strict; use warnings; use lib 't/lib'; use Test::More;
use File::Temp qw(tempdir);
use Sluice::Test qw(:all);

my $sluice = start_sluice();
my $A = '/apisix/admin';
my $up = { type => 'roundrobin', nodes => { '127.0.0.1:1980' => 1 } };

sub req { admin_req($sluice, @_) }

# a certificate for the ssls resource
my $dir = tempdir(CLEANUP => 1);
system("openssl req -x509 -newkey rsa:2048 -nodes -keyout $dir/key.pem -out $dir/cert.pem "
       . "-days 2 -subj /CN=res.local >/dev/null 2>&1") == 0 or BAIL_OUT('openssl req failed');
my ($cert, $key) = map { local $/; open my $f, '<', "$dir/$_" or die; scalar <$f> }
                   qw(cert.pem key.pem);

my %kinds = (
    routes         => { uri => '/r', upstream => $up },
    services       => { upstream => $up, desc => 'svc' },
    upstreams      => $up,
    plugin_configs => { plugins => { 'key-auth' => {} } },
    global_rules   => { plugins => { 'key-auth' => { header => 'x-key' } } },
    ssls           => { cert => $cert, key => $key, snis => ['res.local'] },
);

for my $kind (sort keys %kinds) {
    subtest "$kind: PUT, GET, PATCH, POST, DELETE" => sub {
        my $conf = $kinds{$kind};
        my $res = req('PUT', "$A/$kind/1", $conf);
        is $res->{status}, 201, 'PUT creates: 201';
        my $v = $res->{json}{value};
        is $res->{json}{key}, "/apisix/$kind/1", 'key';
        is $v->{id}, '1', 'id';
        ok $v->{create_time} && $v->{update_time}, 'create_time and update_time';
        ok $res->{json}{createdIndex} && $res->{json}{modifiedIndex}, 'indexes';

        $res = req('PUT', "$A/$kind/1", $conf);
        is $res->{status}, 200, 'PUT replaces: 200';
        is $res->{json}{value}{create_time}, $v->{create_time}, 'create_time kept';
        cmp_ok $res->{json}{modifiedIndex}, '>', $res->{json}{createdIndex}, 'modifiedIndex moved';

        $res = req('GET', "$A/$kind/1");
        is $res->{status}, 200, 'GET one';
        is $res->{json}{key}, "/apisix/$kind/1", 'envelope key';
        if ($kind eq 'ssls') {
            ok !exists $res->{json}{value}{key}, 'the private key is not given back';
            is $res->{json}{value}{cert}, $cert, 'the certificate is';
        }

        $res = req('GET', "$A/$kind");
        is $res->{status}, 200, 'GET list';
        is $res->{json}{total}, 1, 'total';
        is $res->{json}{list}[0]{key}, "/apisix/$kind/1", 'list of envelopes';

        if ($kind eq 'global_rules') {      # its schema has no desc
            $res = req('PATCH', "$A/$kind/1", { plugins => { 'key-auth' => { query => 'k' } } });
            is $res->{status}, 200, 'PATCH merges';
            is_deeply $res->{json}{value}{plugins}{'key-auth'}, { header => 'x-key', query => 'k' },
                      'objects merged key by key';
            $res = req('PATCH', "$A/$kind/1/plugins/key-auth/header", '"y-key"');
            is $res->{status}, 200, 'PATCH sub-path';
            is $res->{json}{value}{plugins}{'key-auth'}{header}, 'y-key', 'attribute replaced';
            $res = req('PATCH', "$A/$kind/1", { plugins => { 'key-auth' => { query => undef } } });
            ok !exists $res->{json}{value}{plugins}{'key-auth'}{query}, 'null removes a key';
        }
        else {
            $res = req('PATCH', "$A/$kind/1", { desc => 'patched' });
            is $res->{status}, 200, 'PATCH merges';
            is $res->{json}{value}{desc}, 'patched', 'new field';
            $res = req('PATCH', "$A/$kind/1/desc", '"by sub-path"');
            is $res->{status}, 200, 'PATCH sub-path';
            is $res->{json}{value}{desc}, 'by sub-path', 'attribute replaced';
            $res = req('PATCH', "$A/$kind/1", { desc => undef });
            ok !exists $res->{json}{value}{desc}, 'null removes a key';
        }
        is req('GET', "$A/$kind/1")->{json}{value}{update_time} >= $v->{update_time} ? 1 : 0, 1,
           'update_time kept current';

        if ($kind eq 'plugin_configs' || $kind eq 'global_rules') {
            $res = req('POST', "$A/$kind", $conf);
            is $res->{status}, 405, 'POST not supported';
            like $res->{json}{error_msg}, qr/not supported `POST` method/, 'message';
        }
        else {
            my %c = %$conf;
            $c{snis} = ['res2.local'] if $kind eq 'ssls';
            $res = req('POST', "$A/$kind", \%c);
            is $res->{status}, 201, 'POST creates';
            my $id = $res->{json}{value}{id};
            like $id, qr/\A\d{20}\z/, 'generated id';
            is $res->{json}{key}, "/apisix/$kind/$id", 'key with the id';
            is req('DELETE', "$A/$kind/$id")->{status}, 200, 'delete it';
        }

        $res = req('DELETE', "$A/$kind/1");
        is $res->{status}, 200, 'DELETE';
        is_deeply $res->{json}, { deleted => '1', key => "/apisix/$kind/1" }, 'body';
        $res = req('GET', "$A/$kind/1");
        is $res->{status}, 404, 'gone: 404';
        is $res->{json}{error_msg}, 'Key not found', 'error_msg';
        is req('DELETE', "$A/$kind/1")->{status}, 404, 'DELETE again: 404';
        $res = req('GET', "$A/$kind");
        is $res->{json}{total}, 0, 'empty list';
        is $res->{body} =~ /"list":\[\]/ ? 1 : 0, 1, 'list is an empty array';
    };
}

subtest 'consumers: PUT with username, GET/DELETE by username' => sub {
    my $res = req('PUT', "$A/consumers", { username => 'jack',
                                           plugins => { 'key-auth' => { key => 'jack-key' } } });
    is $res->{status}, 201, 'created';
    is $res->{json}{key}, '/apisix/consumers/jack', 'key';
    $res = req('PUT', "$A/consumers/jack", { username => 'jack', desc => 'again' });
    is $res->{status}, 200, 'PUT /consumers/{username} replaces';
    $res = req('GET', "$A/consumers/jack");
    is $res->{json}{value}{desc}, 'again', 'GET';
    $res = req('PUT', "$A/consumers/jill", { username => 'jack' });
    is $res->{status}, 400, 'username must match the path';
    is req('POST', "$A/consumers", { username => 'x' })->{status}, 405, 'POST 405';
    is req('PATCH', "$A/consumers/jack", { desc => 'x' })->{status}, 405, 'PATCH 405';
    is req('DELETE', "$A/consumers/jack")->{status}, 200, 'DELETE';
    is req('GET', "$A/consumers/jack")->{status}, 404, 'gone';
};

subtest 'plugin_metadata/{plugin}' => sub {
    my $res = req('PUT', "$A/plugin_metadata/key-auth", {});
    is $res->{status}, 201, 'PUT';
    is $res->{json}{key}, '/apisix/plugin_metadata/key-auth', 'key';
    is req('GET', "$A/plugin_metadata/key-auth")->{status}, 200, 'GET';
    $res = req('PUT', "$A/plugin_metadata/no-such-plugin", {});
    is $res->{status}, 400, 'unknown plugin';
    is $res->{json}{error_msg}, 'invalid plugin name', 'message';
    is req('DELETE', "$A/plugin_metadata/key-auth")->{status}, 200, 'DELETE';
};

subtest 'PUT on the collection takes the id from the body' => sub {
    my $res = req('PUT', "$A/routes", { id => 'named-route', uri => '/n', upstream => $up });
    is $res->{status}, 201, 'created';
    is $res->{json}{key}, '/apisix/routes/named-route', 'key';
    $res = req('PUT', "$A/routes/other", { id => 'named-route', uri => '/n', upstream => $up });
    is $res->{status}, 400, 'body id differs from the path';
    is $res->{json}{error_msg}, 'wrong route id', 'message';
    $res = req('PUT', "$A/routes", { uri => '/n', upstream => $up });
    is $res->{status}, 400, 'no id anywhere';
    is $res->{json}{error_msg}, 'missing route id', 'message';
    req('DELETE', "$A/routes/named-route");
};

subtest 'DELETE of a resource in use needs force=true' => sub {
    is req('PUT', "$A/upstreams/u1", $up)->{status}, 201, 'upstream';
    is req('PUT', "$A/services/s1", { upstream_id => 'u1' })->{status}, 201, 'service using it';
    is req('PUT', "$A/plugin_configs/pc1", { plugins => {} })->{status}, 201, 'plugin config';
    is req('PUT', "$A/routes/r1", { uri => '/x', service_id => 's1', plugin_config_id => 'pc1' })
       ->{status}, 201, 'route using both';

    my $res = req('DELETE', "$A/upstreams/u1");
    is $res->{status}, 400, 'upstream in use';
    is $res->{json}{error_msg}, 'can not delete this upstream, service [s1] is still using it now',
       'message';
    $res = req('DELETE', "$A/services/s1");
    is $res->{status}, 400, 'service in use';
    is $res->{json}{error_msg},
       'can not delete this service directly, route [r1] is still using it now', 'message';
    $res = req('DELETE', "$A/plugin_configs/pc1");
    is $res->{json}{error_msg},
       'can not delete this plugin config, route [r1] is still using it now', 'plugin config';

    is req('DELETE', "$A/upstreams/u1?force=true")->{status}, 200, 'force=true deletes';
    is req('GET', "$A/upstreams/u1")->{status}, 404, 'gone';
    is req('DELETE', "$A/routes/r1")->{status}, 200, 'route';
    is req('DELETE', "$A/services/s1")->{status}, 200, 'then the service';
    is req('DELETE', "$A/plugin_configs/pc1")->{status}, 200, 'and the plugin config';
};

subtest 'list paging and filters' => sub {
    for my $i (1 .. 12) {
        req('PUT', "$A/routes/p$i", { uri => "/page/$i", name => "n$i", upstream => $up,
                                      ($i % 2 ? (labels => { odd => 'yes' }) : ()) });
    }
    my $res = req('GET', "$A/routes?page=2&page_size=10");
    is $res->{json}{total}, 12, 'total counts all';
    is scalar @{ $res->{json}{list} }, 2, 'second page';
    $res = req('GET', "$A/routes?label=odd");
    is $res->{json}{total}, 6, 'label filter';
    $res = req('GET', "$A/routes?name=n1");
    is $res->{json}{total}, 4, 'name filter (n1, n10, n11, n12)';
    $res = req('GET', "$A/routes?uri=/page/7");
    is $res->{json}{total}, 1, 'uri filter';
    req('DELETE', "$A/routes/p$_") for 1 .. 12;
    is req('GET', "$A/routes")->{json}{total}, 0, 'cleaned up';
};

done_testing;
