# Route matching through the gateway: uri exact and prefix, uris, host and wildcard host,
# methods, priority, vars, remote_addrs, filter_func, status 0; what did not match gets 404
# JSON and reaches no upstream.
use strict; use warnings; use lib 't/lib'; use Test::More;
use Sluice::Test qw(start_sluice start_mock_llm http_req);

my $llm = start_mock_llm();
my $node = '127.0.0.1:' . $llm->port;
my $up = { type => 'roundrobin', nodes => { $node => 1 } };

# each route tags the request with a header the mock records, via the upstream's Host rewrite
sub route {
    my ($id, %r) = @_;
    return { id => $id, %r,
             upstream => { %$up, pass_host => 'rewrite', upstream_host => "route-$id" } };
}

my $sluice = start_sluice(routes => [
    route('exact',     uri => '/echo/exact'),
    route('prefix',    uri => '/echo/p/*'),
    route('host',      uri => '/echo/h', hosts => ['api.example.com']),
    route('wildhost',  uri => '/echo/h', hosts => ['*.wild.example']),
    route('nohost',    uri => '/echo/h'),
    route('get',       uri => '/echo/m', methods => ['GET', 'HEAD']),
    route('post',      uri => '/echo/m', methods => ['POST']),
    route('low',       uri => '/echo/prio/*', priority => 1),
    route('high',      uri => '/echo/prio/*', priority => 5),
    route('onlyput',   uri => '/echo/put-only', methods => ['PUT']),
    route('uris',      uris => ['/echo/u1', '/echo/u2']),
    route('vars',      uri => '/echo/vars', vars => [['arg_x', '==', '1'], ['http_x_team', '==', 'alpha']]),
    route('local',     uri => '/echo/addr', remote_addrs => ['127.0.0.0/8']),
    route('remote',    uri => '/echo/addr-far', remote_addrs => ['10.0.0.0/8']),
    route('func',      uri => '/echo/func',
          filter_func => 'function(vars) return vars.arg_y == "2" end'),
    route('disabled',  uri => '/echo/disabled', status => 0),
]);

sub hit {
    my ($method, $path, %h) = @_;
    $llm->clear;
    my $res = http_req($sluice, $method, $path, headers => \%h,
                       $method eq 'POST' ? (body => '{}') : ());
    my $req = $llm->last_request;
    return ($res, $req ? ($req->{headers}{host} // '') =~ s/^route-//r : undef);
}

subtest 'exact uri' => sub {
    my ($res, $id) = hit('GET', '/echo/exact');
    is $res->{status}, 200, 'status';
    is $id, 'exact', 'exact route served';
    ($res, $id) = hit('GET', '/echo/exact/more');
    is $res->{status}, 404, 'longer path does not match an exact uri';
    is $id, undef, 'nothing upstream';
};

subtest 'prefix uri' => sub {
    my ($res, $id) = hit('GET', '/echo/p/a/b?x=1');
    is $res->{status}, 200, 'status';
    is $id, 'prefix', 'prefix route served';
    is $llm->last_request->{path}, '/echo/p/a/b', 'full path upstream';
    ($res, $id) = hit('GET', '/echo/px');
    is $res->{status}, 404, '/echo/px is not under /echo/p/';
};

subtest 'uris list' => sub {
    my ($res, $id) = hit('GET', '/echo/u2');
    is $res->{status}, 200, 'status';
    is $id, 'uris', 'second uri of the list';
};

subtest 'host' => sub {
    my ($res, $id) = hit('GET', '/echo/h', Host => 'api.example.com');
    is $id, 'host', 'exact host';
    ($res, $id) = hit('GET', '/echo/h', Host => 'API.Example.com:9080');
    is $id, 'host', 'host is case-insensitive and the port is ignored';
    ($res, $id) = hit('GET', '/echo/h', Host => 'a.wild.example');
    is $id, 'wildhost', 'wildcard host';
    ($res, $id) = hit('GET', '/echo/h', Host => 'other.example');
    is $res->{status}, 200, 'status';
    is $id, 'nohost', 'route without hosts takes the rest';
};

subtest 'methods' => sub {
    my ($res, $id) = hit('GET', '/echo/m');
    is $id, 'get', 'GET';
    ($res, $id) = hit('POST', '/echo/m');
    is $id, 'post', 'POST';
    ($res, $id) = hit('DELETE', '/echo/m');
    is $res->{status}, 404, 'DELETE matches no route';
    is $res->{json}{error_msg}, '404 Route Not Found', 'APISIX body';
    is $id, undef, 'nothing upstream';
    ($res, $id) = hit('GET', '/echo/put-only');
    is $res->{status}, 404, 'GET on a PUT-only route: 404';
};

subtest 'priority' => sub {
    my ($res, $id) = hit('GET', '/echo/prio/x');
    is $res->{status}, 200, 'status';
    is $id, 'high', 'higher priority wins';
};

subtest 'vars' => sub {
    my ($res, $id) = hit('GET', '/echo/vars?x=1', 'X-Team' => 'alpha');
    is $id, 'vars', 'all vars match';
    ($res, $id) = hit('GET', '/echo/vars?x=2', 'X-Team' => 'alpha');
    is $res->{status}, 404, 'arg_x differs: 404';
    ($res, $id) = hit('GET', '/echo/vars?x=1', 'X-Team' => 'beta');
    is $res->{status}, 404, 'header differs: 404';
};

subtest 'vars with a regex operator (~~)' => sub {
    my $other = eval {
        start_sluice(routes => [ route('re', uri => '/echo/re', vars => [['http_x_team', '~~', '^a']]) ])
    };
    ok $other, 'a route with ~~ in vars is accepted' or diag $@;
    return if !$other;
    $llm->clear;
    my $res = http_req($other, 'GET', '/echo/re', headers => { 'X-Team' => 'alpha' });
    is $res->{status}, 200, 'regex matches: served';
    $res = http_req($other, 'GET', '/echo/re', headers => { 'X-Team' => 'beta' });
    is $res->{status}, 404, 'regex does not match: 404';
};

subtest 'remote_addrs' => sub {
    my ($res, $id) = hit('GET', '/echo/addr');
    is $id, 'local', '127.0.0.1 in 127.0.0.0/8';
    ($res, $id) = hit('GET', '/echo/addr-far');
    is $res->{status}, 404, '127.0.0.1 not in 10.0.0.0/8';
};

subtest 'filter_func' => sub {
    my ($res, $id) = hit('GET', '/echo/func?y=2');
    is $id, 'func', 'function returns true: served';
    ($res, $id) = hit('GET', '/echo/func?y=3');
    is $res->{status}, 404, 'function returns false: 404';
    is $id, undef, 'nothing upstream';
};

subtest 'status 0 disables a route' => sub {
    my ($res, $id) = hit('GET', '/echo/disabled');
    is $res->{status}, 404, '404';
    is $id, undef, 'nothing upstream';
};

done_testing;
