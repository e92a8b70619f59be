# ?ttl=N on PUT and POST: the resource is served until N seconds have passed, then GET answers
# 404, lists leave it out, the data plane stops routing to it and the store file no longer
# holds it; a PUT without ttl makes it permanent again; the expiry survives a restart.
use strict; use warnings; use lib 't/lib'; use Test::More;
use Time::HiRes qw(time sleep);
use Sluice::Test qw(:all);

my $llm = start_mock_llm();
my $sluice = start_sluice();
my $A = '/apisix/admin';
my $up = { type => 'roundrobin', nodes => { '127.0.0.1:' . $llm->port => 1 } };
my $store = $sluice->prefix . '/data/store.json';

sub req { admin_req($sluice, @_) }
sub get { http_req($sluice, 'GET', @_) }
sub raw_store { do { local $/; open my $f, '<', $store or die "$store: $!"; <$f> } }

subtest 'bad ttl values are refused' => sub {
    my $res = req('PUT', "$A/routes/x?ttl=soon", { uri => '/echo/x', upstream => $up });
    is $res->{status}, 400, 'not a number: 400';
    is $res->{json}{error_msg}, 'invalid argument ttl: should be a number', 'error_msg';
    $res = req('PUT', "$A/routes/x?ttl=0", { uri => '/echo/x', upstream => $up });
    is $res->{status}, 400, 'zero: 400';
    is req('GET', "$A/routes/x")->{status}, 404, 'nothing stored';
};

subtest 'a route with a ttl expires from the Admin API and the data plane' => sub {
    my $t0 = time;
    my $res = req('PUT', "$A/routes/short?ttl=2", { uri => '/echo/short', upstream => $up });
    is $res->{status}, 201, 'PUT ?ttl=2: 201';
    $res = req('POST', "$A/upstreams?ttl=2", $up);
    is $res->{status}, 201, 'POST ?ttl=2: 201';
    my $up_key = $res->{json}{key};
    is req('PUT', "$A/routes/long", { uri => '/echo/long', upstream => $up,
        plugins => {} })->{status}, 201, 'a route without ttl';

    is req('GET', "$A/routes/short")->{status}, 200, 'GET before the ttl';
    is get('/echo/short')->{status}, 200, 'served before the ttl';
    is req('GET', "$A/routes")->{json}{total}, 2, 'listed';

    ok wait_for(sub { get('/echo/short')->{status} == 404 }, 5),
       'the data plane stops routing to it';
    my $took = time - $t0;
    ok $took >= 1.8, sprintf('not before its time (%.2f s)', $took);
    ok $took <= 3.5, sprintf('soon after (%.2f s)', $took);

    $res = req('GET', "$A/routes/short");
    is $res->{status}, 404, 'GET: 404';
    is $res->{json}{message}, 'Key not found', 'Key not found';
    $res = req('GET', "$A/routes");
    is $res->{json}{total}, 1, 'the list has only the other route';
    is $res->{json}{list}[0]{key}, '/apisix/routes/long', 'which is it';
    (my $up_path = $up_key) =~ s{^/apisix}{$A};
    is req('GET', $up_path)->{status}, 404, 'the POSTed upstream expired too';
    ok wait_for(sub { raw_store() !~ /"short"/ }, 2), 'swept from store.json';
    is get('/echo/long')->{status}, 200, 'the other route still serves';

    is req('PUT', "$A/routes/short?ttl=2", { uri => '/echo/short', upstream => $up })
       ->{status}, 201, 'PUT again after expiry: created (201)';
};

subtest 'a PUT without ttl makes it permanent' => sub {
    is req('PUT', "$A/routes/keep?ttl=1", { uri => '/echo/keep', upstream => $up })->{status}, 201,
       'with ttl=1';
    is req('PUT', "$A/routes/keep", { uri => '/echo/keep', upstream => $up })->{status}, 200,
       'replaced without ttl';
    sleep 1.5;
    is req('GET', "$A/routes/keep")->{status}, 200, 'still there after 1.5 s';
    is get('/echo/keep')->{status}, 200, 'still served';
};

subtest 'the expiry survives a restart' => sub {
    is req('PUT', "$A/routes/restart?ttl=3", { uri => '/echo/restart', upstream => $up })
       ->{status}, 201, 'PUT ?ttl=3';
    my $t0 = time;
    $sluice->stop;
    $sluice->start;
    is get('/echo/restart')->{status}, 200, 'served after the restart';
    ok wait_for(sub { get('/echo/restart')->{status} == 404 }, 6), 'and expires on time';
    my $took = time - $t0;
    ok $took >= 2.8 && $took <= 4.5, sprintf('at about 3 s (%.2f s)', $took);
    is req('GET', "$A/routes/restart")->{status}, 404, 'GET: 404';
};

done_testing;
