# Every worker serves an Admin API change within a second: with two workers, a route PUT,
# replaced, patched and deleted is seen by both (a test plugin answers with its worker's pid).
use strict; use warnings; use lib 't/lib'; use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use Sluice::Test qw(:all);

# test-pid: answers {pid, tag} from the access phase, and X-Worker-Pid
my $dir = tempdir(CLEANUP => 1);
open my $fh, '>', "$dir/test-pid.lua" or die;
print $fh <<'LUA';
local ffi = require("ffi")
local pdk = require("sluice.pdk")
pcall(ffi.cdef, "int getpid(void);")
return {
    name = "test-pid", version = 1, priority = 100,
    schema = { type = "object", properties = { tag = { type = "string", default = "none" } } },
    rewrite = function(conf, ctx)
        pdk.response.set_header("X-Worker-Pid", tostring(ffi.C.getpid()))
    end,
    access = function(conf, ctx)
        return 200, { pid = ffi.C.getpid(), tag = conf.tag }
    end,
}
LUA
close $fh;

my $sluice = start_sluice(workers => 2, config => { plugin_paths => [$dir],
                                                    plugins => ['key-auth', 'test-pid'] });
my @pids;
wait_for(sub { (@pids = $sluice->worker_pids) == 2 }, 5);   # forked after the ports open
is scalar @pids, 2, 'two workers';

# Requests (each on a new connection, so the kernel spreads them over the workers) until
# every worker has answered $want for $path; returns the seconds it took, or undef.
sub seen_by_all {
    my ($path, $want, $limit) = @_;
    my $t0 = time;
    my %ok;
    while (time - $t0 < $limit) {
        my $res = http_req($sluice, 'GET', $path, timeout => 2);
        my $pid = $res->{headers}{'x-worker-pid'} // ($res->{json} && $res->{json}{pid});
        if ($want->($res)) {
            $ok{$pid // 'none'} = 1;
            return time - $t0 if grep({ $ok{$_} } @pids) == @pids;
        }
        else {
            delete $ok{$pid} if defined $pid;
        }
        sleep 0.005;
    }
    return undef;
}

my $A = '/apisix/admin/routes';

subtest 'a new route is served by every worker within 1 s' => sub {
    is admin_put($sluice, "$A/who", { uri => '/who', plugins => { 'test-pid' => { tag => 'v1' } } })
       ->{status}, 201, 'PUT';
    my $t = seen_by_all('/who', sub { ($_[0]{json}{tag} // '') eq 'v1' }, 3);
    ok defined $t, 'both workers answered';
    cmp_ok $t // 99, '<=', 1, 'within 1 s';
    diag sprintf 'visible on both workers after %.0f ms', ($t // 99) * 1000;
};

subtest 'replacing it: every worker switches within 1 s' => sub {
    for my $n (2 .. 6) {
        admin_put($sluice, "$A/who", { uri => '/who',
                                       plugins => { 'test-pid' => { tag => "v$n" } } });
        my $t = seen_by_all('/who', sub { ($_[0]{json}{tag} // '') eq "v$n" }, 3);
        cmp_ok $t // 99, '<=', 1, "v$n within 1 s";
    }
};

subtest 'PATCH is seen by every worker' => sub {
    my $res = admin_req($sluice, 'PATCH', "$A/who/plugins/test-pid/tag", '"patched"');
    is $res->{status}, 200, 'PATCH';
    my $t = seen_by_all('/who', sub { ($_[0]{json}{tag} // '') eq 'patched' }, 3);
    cmp_ok $t // 99, '<=', 1, 'within 1 s';
};

subtest 'DELETE: every worker answers 404 within 1 s' => sub {
    is admin_req($sluice, 'DELETE', "$A/who")->{status}, 200, 'DELETE';
    my $t0 = time;
    my $n404 = 0;
    while (time - $t0 < 3 && $n404 < 20) {
        my $res = http_req($sluice, 'GET', '/who', timeout => 2);
        $n404 = $res->{status} == 404 ? $n404 + 1 : 0;
    }
    is $n404, 20, '20 requests in a row got 404';
    cmp_ok time - $t0, '<=', 1.5, 'soon';
};

subtest 'a write on either worker reaches the other' => sub {
    # the Admin API is served by whichever worker accepts: write many times, every write
    # must be seen everywhere
    for my $n (1 .. 10) {
        admin_put($sluice, "$A/w$n", { uri => "/w$n",
                                       plugins => { 'test-pid' => { tag => "w$n" } } });
    }
    for my $n (1, 10) {
        my $t = seen_by_all("/w$n", sub { ($_[0]{json}{tag} // '') eq "w$n" }, 3);
        ok defined $t, "/w$n everywhere";
    }
};

done_testing;
