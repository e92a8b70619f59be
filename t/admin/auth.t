# Admin API access: X-API-KEY (also ?api_key= and the x_api_key cookie), the admin and viewer
# roles, APISIX's 401 bodies, admin.allow (403), and the shipped default key refused on a
# non-loopback admin.listen.
use strict; use warnings; use lib 't/lib'; use Test::More;
use Sluice::Test qw(:all);

my $sluice = start_sluice();
my $R = '/apisix/admin/routes';
my $route = { uri => '/auth', plugins => { 'key-auth' => {} } };

sub store_bytes {
    my $f = $sluice->prefix . '/data/store.json';
    return -e $f ? do { local $/; open my $fh, '<', $f or die; <$fh> } : '';
}

subtest 'admin key in X-API-KEY' => sub {
    my $res = admin_put($sluice, "$R/1", $route);
    is $res->{status}, 201, 'created';
    is $res->{headers}{'x-api-version'}, 'v3', 'X-API-VERSION: v3';
    like $res->{headers}{'content-type'}, qr{application/json}, 'JSON';
};

subtest 'admin key in ?api_key= and in the x_api_key cookie' => sub {
    my $res = admin_req($sluice, 'GET', "$R/1?api_key=" . ADMIN_KEY, undef, no_key => 1);
    is $res->{status}, 200, 'query argument';
    is $res->{json}{value}{uri}, '/auth', 'the route';
    $res = admin_req($sluice, 'GET', "$R/1", undef, no_key => 1,
                     headers => { Cookie => 'a=b; x_api_key=' . ADMIN_KEY });
    is $res->{status}, 200, 'cookie';
};

subtest 'missing key: 401 missing apikey' => sub {
    my $before = store_bytes();
    my $res = admin_req($sluice, 'PUT', "$R/2", $route, no_key => 1);
    is $res->{status}, 401, 'status 401';
    is_deeply $res->{json}, { error_msg => 'failed to check token',
                              description => 'missing apikey' }, 'APISIX body';
    is store_bytes(), $before, 'store untouched';
    $res = admin_req($sluice, 'GET', $R, undef, no_key => 1);
    is $res->{status}, 401, 'reads need a key too';
};

subtest 'wrong key: 401 wrong apikey' => sub {
    for my $key ('nope', substr(ADMIN_KEY, 0, 31), ADMIN_KEY . 'x', '') {
        my $res = admin_req($sluice, 'GET', $R, undef, key => $key);
        is $res->{status}, 401, "401 for '$key'";
        is $res->{json}{description}, 'wrong apikey', 'wrong apikey';
    }
};

subtest 'viewer: GET yes, writes no' => sub {
    my $res = admin_req($sluice, 'GET', $R, undef, key => VIEWER_KEY);
    is $res->{status}, 200, 'GET list';
    is $res->{json}{total}, 1, 'sees the route';
    $res = admin_req($sluice, 'GET', '/apisix/admin/plugins/list', undef, key => VIEWER_KEY);
    is $res->{status}, 200, 'GET plugins/list';
    my $before = store_bytes();
    for my $m (qw(PUT POST PATCH DELETE)) {
        my $path = $m eq 'POST' ? $R : "$R/1";
        $res = admin_req($sluice, $m, $path, $m eq 'DELETE' ? undef : $route,
                         key => VIEWER_KEY);
        is $res->{status}, 401, "$m refused";
        is_deeply $res->{json}, { error_msg => 'failed to check token',
                                  description => 'invalid method for role viewer' }, 'body';
    }
    $res = admin_req($sluice, 'PUT', '/apisix/admin/plugins/reload', undef, key => VIEWER_KEY);
    is $res->{status}, 401, 'plugins/reload refused';
    is store_bytes(), $before, 'store untouched';
};

subtest 'HEAD /apisix/admin needs no key' => sub {
    my $res = http_req($sluice->admin_url(''), 'HEAD', '/apisix/admin');
    is $res->{status}, 200, 'status 200';
};

subtest 'unknown paths' => sub {
    my $res = admin_req($sluice, 'GET', '/apisix/admin/routs');
    is $res->{status}, 404, 'unknown resource 404';
    is $res->{json}{error_msg}, 'Unsupported resource type: routs', 'message';
    $res = admin_req($sluice, 'GET', '/other');
    is $res->{status}, 404, 'outside the prefix 404';
    ok defined $res->{json}{error_msg}, 'JSON error';
};

subtest 'admin.allow: other addresses get 403' => sub {
    my $s2 = start_sluice(config => { admin => { allow => ['10.0.0.0/8'] } });
    my $res = admin_req($s2, 'GET', $R);
    is $res->{status}, 403, '403 from 127.0.0.1';
    ok defined $res->{json}{error_msg}, 'JSON error_msg';
    $s2->stop;
};

subtest 'the default key is refused on a non-loopback admin.listen' => sub {
    my $port = free_port();
    my $s3 = start_sluice(expect_exit => 1, admin_port => $port,
                          config => { admin => { listen => "0.0.0.0:$port",
                                                 keys => [{ name => 'admin', role => 'admin',
                                                            key => ADMIN_KEY }] } });
    isnt $s3->exit_status, 0, 'does not start';
    like $s3->stderr, qr/default admin key/, 'says why';

    my $s4 = start_sluice(admin_port => $port,
                          config => { admin => { listen => "0.0.0.0:$port",
                                                 keys => [{ name => 'admin', role => 'admin',
                                                            key => 'a-key-of-my-own' }] } });
    my $res = admin_req($s4, 'GET', $R, undef, key => 'a-key-of-my-own');
    is $res->{status}, 200, 'starts with a key of its own';
    $s4->stop;
};

done_testing;
