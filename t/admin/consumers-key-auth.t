# Consumers with key-auth: the key (header `apikey`, query `apikey`, or the configured
# header/query) identifies ctx.consumer; APISIX's 401 bodies; the consumer's plugins are
# merged over the route's (the consumer's conf wins, priority order kept); hide_credentials;
# anonymous_consumer; consumer changes take effect without a restart.
use strict; use warnings; use lib 't/lib'; use Test::More;
use File::Temp qw(tempdir);
use Sluice::Test qw(:all);

my $dir = tempdir(CLEANUP => 1);
my %plugins = (
    # test-echo: answers from access with its conf and what it knows of the consumer
    'test-echo' => <<'LUA',
local pdk = require("sluice.pdk")
return {
    name = "test-echo", version = 1, priority = 100,
    schema = { type = "object", properties = { tag = { type = "string" } } },
    access = function(conf, ctx)
        return 200, { tag = conf.tag, consumer = ctx.consumer_name,
                      var_consumer = ctx.var.consumer_name,
                      username = ctx.consumer and ctx.consumer.username,
                      apikey = pdk.request.header(ctx, "apikey"),
                      x_consumer = pdk.request.header(ctx, "X-Consumer-Username") }
    end,
}
LUA
    # test-mark: sets X-Mark in access; priority above key-auth's
    'test-mark' => <<'LUA',
local pdk = require("sluice.pdk")
return {
    name = "test-mark", version = 1, priority = 3000,
    schema = { type = "object", properties = { mark = { type = "string" } } },
    rewrite = function(conf, ctx)
        pdk.response.set_header("X-Mark-Rewrite", conf.mark)
    end,
    access = function(conf, ctx)
        pdk.response.set_header("X-Mark", conf.mark)
    end,
}
LUA
);
for my $name (keys %plugins) {
    open my $fh, '>', "$dir/$name.lua" or die;
    print $fh $plugins{$name};
    close $fh;
}

my $llm = start_mock_llm();
my $sluice = start_sluice(config => { plugin_paths => [$dir],
                                      plugins => ['key-auth', 'test-echo', 'test-mark'] });
my $A = '/apisix/admin';
my $up = { type => 'roundrobin', nodes => { '127.0.0.1:' . $llm->port => 1 } };

sub put_ok {
    my ($path, $body, $name) = @_;
    my $res = admin_put($sluice, "$A/$path", $body);
    ok $res->{status} == 200 || $res->{status} == 201, $name // "PUT $path"
        or diag $res->{body};
}

put_ok('consumers', { username => 'jack', plugins => {
    'key-auth' => { key => 'jack-key' }, 'test-echo' => { tag => 'jack' },
    'test-mark' => { mark => 'jack' } } });
put_ok('consumers', { username => 'jill', plugins => { 'key-auth' => { key => 'jill-key' } } });
put_ok('consumers', { username => 'anon' });
put_ok('routes/a', { uri => '/a', plugins => { 'key-auth' => {},
                                               'test-echo' => { tag => 'route' } } });
put_ok('routes/b', { uri => '/b', plugins => { 'key-auth' => { header => 'x-key', query => 'k' },
                                               'test-echo' => { tag => 'b' } } });
put_ok('routes/c', { uri => '/static.json', upstream => $up,
                     plugins => { 'key-auth' => { hide_credentials => JSON::PP::true() } } });
put_ok('routes/d', { uri => '/d', plugins => { 'key-auth' => { anonymous_consumer => 'anon' },
                                               'test-echo' => { tag => 'd' } } });

sub get { http_req($sluice, 'GET', @_) }

subtest 'no key: 401 Missing API key in request' => sub {
    my $res = get('/a');
    is $res->{status}, 401, 'status 401';
    is_deeply $res->{json}, { message => 'Missing API key in request' }, 'body';
    is $res->{headers}{'www-authenticate'}, 'apikey realm="key"', 'WWW-Authenticate';
};

subtest 'wrong key: 401 Invalid API key in request' => sub {
    my $res = get('/a', headers => { apikey => 'nope' });
    is $res->{status}, 401, 'status 401';
    is_deeply $res->{json}, { message => 'Invalid API key in request' }, 'body';
    $res = get('/a?apikey=nope');
    is $res->{json}{message}, 'Invalid API key in request', 'in the query too';
};

subtest 'the key identifies the consumer; its plugin conf wins' => sub {
    my $res = get('/a', headers => { apikey => 'jack-key' });
    is $res->{status}, 200, 'jack in';
    is $res->{json}{consumer}, 'jack', 'ctx.consumer_name';
    is $res->{json}{var_consumer}, 'jack', 'ctx.var.consumer_name';
    is $res->{json}{username}, 'jack', 'ctx.consumer';
    is $res->{json}{tag}, 'jack', "the consumer's test-echo conf replaced the route's";
    is $res->{headers}{'x-mark'}, 'jack', "a plugin only the consumer has runs too";
    is $res->{headers}{'x-mark-rewrite'}, 'jack',
       "and its rewrite phase, once the consumer is known (APISIX's rewrite_in_consumer)";
    is $res->{json}{x_consumer}, 'jack', 'X-Consumer-Username for the upstream';

    $res = get('/a?apikey=jill-key');
    is $res->{status}, 200, 'jill in with ?apikey=';
    is $res->{json}{consumer}, 'jill', 'jill';
    is $res->{json}{tag}, 'route', "jill has no test-echo: the route's conf";
    ok !defined $res->{headers}{'x-mark'}, 'and no test-mark';

    $res = get('/a', headers => { apikey => 'jill-key', 'X-Consumer-Username' => 'jack' });
    is $res->{json}{x_consumer}, 'jill', 'a client cannot pose as another consumer';
};

subtest 'configured header and query names' => sub {
    is get('/b', headers => { 'x-key' => 'jack-key' })->{json}{consumer}, 'jack', 'header x-key';
    is get('/b?k=jill-key')->{json}{consumer}, 'jill', 'query k';
    my $res = get('/b', headers => { apikey => 'jack-key' });
    is $res->{status}, 401, 'apikey is not the header of this route';
    is $res->{json}{message}, 'Missing API key in request', 'missing';
};

subtest 'hide_credentials: the key does not reach the upstream' => sub {
    my $res = get('/static.json', headers => { apikey => 'jill-key' });
    is $res->{status}, 200, 'proxied';
    my $seen = $llm->last_request->{headers};
    ok !exists $seen->{apikey}, 'no apikey header upstream';
    is $seen->{'x-consumer-username'}, 'jill', 'X-Consumer-Username upstream';
    $res = get('/static.json?apikey=jill-key');
    is $res->{status}, 200, 'query key accepted';
    unlike $llm->last_request->{query} // '', qr/apikey/, 'no apikey in the query upstream';
    $res = get('/static.json?a=1&apikey=jill-key&b=2');
    is $llm->last_request->{args}{a}, '1', 'the other arguments stay';
    is $llm->last_request->{args}{b}, '2', 'all of them';
};

subtest 'anonymous_consumer' => sub {
    my $res = get('/d');
    is $res->{status}, 200, 'no key: the anonymous consumer';
    is $res->{json}{consumer}, 'anon', 'anon';
    is get('/d', headers => { apikey => 'jack-key' })->{json}{consumer}, 'jack',
       'a key still wins';
    is get('/d', headers => { apikey => 'bad' })->{json}{consumer}, 'anon', 'a bad key: anon';
};

subtest 'consumer changes apply without a restart' => sub {
    put_ok('consumers', { username => 'jill', plugins => { 'key-auth' => { key => 'jill-2' } } },
           'new key for jill');
    ok wait_for(sub { get('/a', headers => { apikey => 'jill-2' })->{status} == 200 }, 1),
       'the new key works within 1 s';
    is get('/a', headers => { apikey => 'jill-key' })->{status}, 401, 'the old one not';
    is admin_req($sluice, 'DELETE', "$A/consumers/jill")->{status}, 200, 'DELETE jill';
    ok wait_for(sub { get('/a', headers => { apikey => 'jill-2' })->{status} == 401 }, 1),
       'her key stops working';
};

subtest 'the access log names the consumer' => sub {
    my $log = $sluice->wait_access_log(5);
    my @jack = grep { ($_->{consumer} // '') eq 'jack' } @$log;
    ok scalar @jack, 'lines with consumer jack';
    unlike join("\n", map { JSON::PP->new->canonical->encode($_) } @$log), qr/jack-key/,
           'no key in the access log';
};

done_testing;
