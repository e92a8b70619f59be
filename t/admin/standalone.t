# The standalone file provider (config.provider "file"): the same resource types as the
# Admin API, checked the same way; a change to the file is applied without a restart; a broken
# file is rejected whole, with the reason in error.log, and the previous configuration keeps
# serving; a broken file at start-up stops the start.
use strict; use warnings; use lib 't/lib'; use Test::More;
use File::Temp qw(tempdir);
use Sluice::Test qw(:all);

my $dir = tempdir(CLEANUP => 1);
system("openssl req -x509 -newkey rsa:2048 -nodes -keyout $dir/key.pem -out $dir/cert.pem "
       . "-days 2 -subj /CN=file.local >/dev/null 2>&1") == 0 or BAIL_OUT('openssl req failed');
my ($cert, $key) = map { local $/; open my $f, '<', "$dir/$_" or die; scalar <$f> }
                   qw(cert.pem key.pem);

my $llm = start_mock_llm();
my $up = { type => 'roundrobin', nodes => { '127.0.0.1:' . $llm->port => 1 } };

sub doc {
    my (%over) = @_;
    return {
        upstreams      => [{ id => 'u1', %$up }],
        services       => [{ id => 's1', upstream_id => 'u1' }],
        plugin_configs => [{ id => 'pc1', plugins => { 'key-auth' => {} } }],
        consumers      => [{ username => 'jack', plugins => { 'key-auth' => { key => 'jk' } } }],
        global_rules   => [{ id => 'g1', plugins => {} }],
        plugin_metadata => [{ id => 'key-auth' }],
        ssls           => [{ id => 'c1', cert => $cert, key => $key, snis => ['file.local'] }],
        routes         => [
            { id => 'open', uri => '/static.json', service_id => 's1',
              desc => $over{desc} // 'v1' },
            { id => 'guarded', uri => '/guarded', upstream_id => 'u1', plugin_config_id => 'pc1' },
        ],
        %over{grep { $_ ne 'desc' } keys %over},
    };
}

my ($port, $tls) = (free_port(), free_port());
my $sluice = start_sluice(standalone => doc(), port => $port,
                          config => { listen => ["127.0.0.1:$port", "127.0.0.1:$tls ssl"] });

sub get { http_req($sluice, 'GET', @_) }

subtest 'every resource type is served from the file' => sub {
    is get('/static.json')->{status}, 200, 'route -> service -> upstream';
    is $llm->last_request->{path}, '/static.json', 'reached the upstream';
    is get('/guarded')->{status}, 401, 'plugin_config_id: key-auth';
    is get('/guarded', headers => { apikey => 'jk' })->{status}, 404,
       'the consumer passes (the mock has no /guarded)';
    my $cmd = "echo | timeout 5 openssl s_client -connect 127.0.0.1:$tls -servername file.local";
    my $out = `$cmd 2>&1`;
    like $out, qr/subject=CN ?= ?file\.local/, 'ssls: the certificate is served';
};

subtest 'a change to the file is applied' => sub {
    $sluice->write_routes(doc(routes => [{ id => 'new', uri => '/static.json', upstream => $up,
                                           plugins => { 'key-auth' => {} } }]));
    ok wait_for(sub { get('/static.json')->{status} == 401 }, 3), 'new routes in effect';
    is get('/guarded')->{status}, 404, 'the old route is gone';
};

my @broken = (
    [ 'malformed JSON', '{"routes": [' ],
    [ 'unknown plugin', doc(routes => [{ id => 'x', uri => '/x', plugins => { nope => {} } }]),
      qr/unknown plugin \[nope\]/ ],
    [ 'missing reference', doc(routes => [{ id => 'x', uri => '/x', upstream_id => 'missing' }]),
      qr/failed to fetch upstream info by upstream id \[missing\]/ ],
    [ 'wrong type', doc(routes => [{ id => 'x', uri => 42, upstream => $up }]),
      qr/property "uri" validation failed: wrong type: expected string, got number/ ],
    [ 'plugin schema', doc(routes => [{ id => 'x', uri => '/x',
                                        plugins => { 'key-auth' => { header => [] } } }]),
      qr/failed to check the configuration of plugin key-auth/ ],
    [ 'duplicate id', doc(routes => [{ id => 'x', uri => '/x', upstream => $up },
                                     { id => 'x', uri => '/y', upstream => $up }]),
      qr/found duplicate id x in routes/ ],
    [ 'unknown resource type', { %{ doc() }, widgets => [] }, qr/unknown resource type widgets/ ],
);

for my $case (@broken) {
    my ($name, $content, $why) = @$case;
    subtest "broken file rejected whole: $name" => sub {
        my $log_before = length $sluice->error_log;
        if (ref $content) {
            $sluice->write_routes($content);
        }
        else {
            my $f = $sluice->prefix . '/conf/routes.json';
            open my $fh, '>', "$f.tmp" or die;
            print $fh $content;
            close $fh;
            rename "$f.tmp", $f or die;
        }
        my $new_log = sub { substr($sluice->error_log, $log_before) };
        ok wait_for(sub { $new_log->() =~ /rejected configuration file/ }, 3), 'rejected, logged';
        like substr($sluice->error_log, $log_before), $why, 'with the reason' if $why;
        is get('/static.json')->{status}, 401, 'the previous configuration still serves';
        is get('/x')->{status}, 404, 'nothing of the broken file is used';
    };
}

subtest 'a fixed file is applied again' => sub {
    $sluice->write_routes(doc(desc => 'v2'));
    ok wait_for(sub { get('/guarded')->{status} == 401 }, 3), 'applied';
};

subtest 'the Admin API cannot change a file configuration' => sub {
    my $res = admin_put($sluice, '/apisix/admin/routes/x', { uri => '/x', upstream => $up });
    is $res->{status}, 400, 'PUT refused';
    like $res->{json}{error_msg}, qr/config\.provider "file"/, 'says why';
    is admin_req($sluice, 'GET', '/apisix/admin/plugins/list')->{status}, 200, 'reads work';
    is get('/x')->{status}, 404, 'nothing changed';
};

subtest 'a broken file at start-up stops the start' => sub {
    my $s2 = start_sluice(expect_exit => 1, standalone => doc(routes => [
        { id => 'x', uri => '/x', plugins => { nope => {} } }]));
    isnt $s2->exit_status, 0, 'exit status';
    like $s2->stderr, qr/unknown plugin \[nope\]/, 'says why';
};

done_testing;
