# Consumer groups (/apisix/admin/consumer_groups/{id}), as APISIX: a consumer's group_id must
# name one, a group still used cannot be deleted (unless ?force=true), and the group's plugins
# apply to its consumers, the consumer's own conf winning for the same plugin.
use strict; use warnings; use lib 't/lib'; use Test::More;
use File::Temp qw(tempdir);
use Sluice::Test qw(:all);

# test-tag-a/-b: set request header X-<name> to their tag in access, so the upstream sees
# whose conf ran
my $dir = tempdir(CLEANUP => 1);
for my $name (qw(test-tag-a test-tag-b)) {
    open my $fh, '>', "$dir/$name.lua" or die;
    print $fh <<"LUA";
local pdk = require("sluice.pdk")
return {
    name = "$name", version = 1, priority = 100,
    schema = { type = "object", properties = { tag = { type = "string" } },
               required = { "tag" } },
    access = function(conf, ctx) pdk.request.set_header(ctx, "X-$name", conf.tag) end,
}
LUA
    close $fh;
}

my $llm = start_mock_llm();
my $sluice = start_sluice(config => { plugin_paths => [$dir],
                                      plugins => ['key-auth', 'test-tag-a', 'test-tag-b'] });
my $A = '/apisix/admin';
my $up = { type => 'roundrobin', nodes => { '127.0.0.1:' . $llm->port => 1 } };

sub req { admin_req($sluice, @_) }
sub get { http_req($sluice, 'GET', @_) }

# the X-test-tag-* headers the upstream got for one request with this key
sub tags {
    my ($key) = @_;
    my $res = get('/static.json', headers => { apikey => $key });
    return {} unless $res->{status} == 200;
    my $h = $llm->last_request->{headers};
    return { status => 200, user => $h->{'x-consumer-username'},
             a => $h->{'x-test-tag-a'}, b => $h->{'x-test-tag-b'} };
}

subtest 'CRUD with APISIX envelopes and messages' => sub {
    my $res = admin_put($sluice, "$A/consumer_groups/gold", { desc => 'gold tier',
        labels => { tier => 'gold' },
        plugins => { 'test-tag-a' => { tag => 'group-a' }, 'test-tag-b' => { tag => 'group-b' } } });
    is $res->{status}, 201, 'PUT: 201';
    is $res->{json}{key}, '/apisix/consumer_groups/gold', 'key';
    is $res->{json}{value}{id}, 'gold', 'value.id';

    $res = req('GET', "$A/consumer_groups/gold");
    is $res->{status}, 200, 'GET';
    is $res->{json}{value}{desc}, 'gold tier', 'desc';
    is req('GET', "$A/consumer_groups")->{json}{total}, 1, 'list';

    $res = req('PATCH', "$A/consumer_groups/gold", { desc => 'gold' });
    is $res->{status}, 200, 'PATCH';
    is $res->{json}{value}{desc}, 'gold', 'patched';

    $res = admin_put($sluice, "$A/consumer_groups/bad", { plugins => { nope => {} } });
    is $res->{status}, 400, 'unknown plugin: 400';
    is $res->{json}{error_msg}, 'unknown plugin [nope]', 'error_msg';
    $res = admin_put($sluice, "$A/consumer_groups/bad", { desc => 'no plugins' });
    is $res->{status}, 400, 'no plugins: 400';
    like $res->{json}{error_msg}, qr/^invalid configuration: property "plugins" is required/,
         'error_msg';
    $res = req('POST', "$A/consumer_groups", { plugins => {} });
    is $res->{status}, 405, 'POST: 405';
    is $res->{json}{error_msg}, 'not supported `POST` method for consumer group', 'error_msg';
};

subtest "a consumer's group_id must exist" => sub {
    my $res = admin_put($sluice, "$A/consumers", { username => 'jack', group_id => 'silver' });
    is $res->{status}, 400, 'status 400';
    is $res->{json}{error_msg},
       'failed to fetch consumer group info by consumer group id [silver], response code: 404',
       'error_msg';
    is req('GET', "$A/consumers/jack")->{status}, 404, 'not stored';
};

is admin_put($sluice, "$A/consumers", { username => 'jack', group_id => 'gold',
    plugins => { 'key-auth' => { key => 'jack-key' }, 'test-tag-b' => { tag => 'jack-b' } } })
   ->{status}, 201, 'jack in gold';
is admin_put($sluice, "$A/consumers", { username => 'jill',
    plugins => { 'key-auth' => { key => 'jill-key' } } })->{status}, 201, 'jill, no group';
is admin_put($sluice, "$A/routes/1", { uri => '/static.json', upstream => $up,
    plugins => { 'key-auth' => {} } })->{status}, 201, 'route';

subtest "the group's plugins apply to its consumers; the consumer's conf wins" => sub {
    my $t = tags('jack-key');
    is $t->{status}, 200, 'jack proxied';
    is $t->{user}, 'jack', 'upstream saw jack';
    is $t->{a}, 'group-a', "the group's plugin ran";
    is $t->{b}, 'jack-b', "jack's own conf beat the group's";

    $t = tags('jill-key');
    is $t->{status}, 200, 'jill proxied';
    ok !defined $t->{a}, 'no group, no group plugins';

    is admin_put($sluice, "$A/consumer_groups/gold",
                 { plugins => { 'test-tag-a' => { tag => 'group-a2' } } })->{status}, 200,
       'group changed';
    ok wait_for(sub { (tags('jack-key')->{a} // '') eq 'group-a2' }, 2),
       'the change applies without a restart';
};

subtest 'a group in use cannot be deleted' => sub {
    my $res = req('DELETE', "$A/consumer_groups/gold");
    is $res->{status}, 400, 'status 400';
    is $res->{json}{error_msg},
       'can not delete this consumer group, consumer [jack] is still using it now', 'error_msg';
    is req('GET', "$A/consumer_groups/gold")->{status}, 200, 'still there';

    is admin_put($sluice, "$A/consumers", { username => 'jack',
        plugins => { 'key-auth' => { key => 'jack-key' } } })->{status}, 200, 'jack leaves';
    is req('DELETE', "$A/consumer_groups/gold")->{status}, 200, 'now it can go';
    is req('GET', "$A/consumer_groups/gold")->{status}, 404, 'gone';
    ok wait_for(sub { my $t = tags('jack-key'); $t->{status} && !defined $t->{a} }, 2),
       'and its plugins no longer run';
};

done_testing;
