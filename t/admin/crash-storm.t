# kill -9 of the whole process group in the middle of a storm of Admin API writes: after a
# restart the store loads and every write that was acknowledged (2xx received) is there.
use strict; use warnings; use lib 't/lib'; use Test::More;
use File::Temp qw(tempdir);
use JSON::PP ();
use POSIX qw(_exit);
use Time::HiRes qw(time sleep);
use Sluice::Test qw(:all);

my $WRITERS = 8;
my $sluice = start_sluice(workers => 2);
my $A = '/apisix/admin/routes';
my $dir = tempdir(CLEANUP => 1);
my $up = { type => 'roundrobin', nodes => { '127.0.0.1:1980' => 1 } };

# a few routes before the storm, replaced during it
admin_put($sluice, "$A/base$_", { uri => "/base$_", upstream => $up, desc => 'v0' }) for 1 .. 3;

# Each writer PUTs new routes (and replaces base routes) until the gateway stops answering,
# and logs each acknowledged write, with the desc it wrote, as soon as it has the answer.
my @kids;
for my $w (1 .. $WRITERS) {
    my $pid = fork;
    die "fork: $!" if !defined $pid;
    if ($pid == 0) {
        open my $log, '>', "$dir/acks.$w" or _exit(2);
        $log->autoflush(1);
        my $deadline = time + 20;
        for (my $i = 1; time < $deadline; $i++) {
            my ($id, $desc) = $i % 5 ? ("w$w-$i", 'new') : ('base' . (1 + $i % 3), "w$w-$i");
            print $log "try $id $desc\n";
            my $res = admin_put($sluice, "$A/$id", { uri => "/$id", upstream => $up,
                                                     desc => $desc }, timeout => 3);
            last if $res->{status} == 599;
            print $log "ack $id $desc\n" if $res->{status} == 200 || $res->{status} == 201;
        }
        _exit(0);
    }
    push @kids, $pid;
}

# let the storm run, then kill everything at once while writes are in flight
my $acked = sub { my $n = 0; $n += (-s "$dir/acks.$_" // 0) for 1 .. $WRITERS; $n };
wait_for(sub { $acked->() > 4000 }, 10, 0.01);
sleep 0.2;
my $pgid = $sluice->pid;
kill 'KILL', -$pgid;
$sluice->wait_exit(5);
wait_for(sub { !kill 0, -$pgid }, 5);      # the workers too (they hold the ports)
waitpid $_, 0 for @kids;

# %want: id -> acknowledged; %tried: id -> every value sent (a write in flight at the kill
# may or may not have been committed; base routes are replaced by several writers)
my (%want, %tried, $n);
for my $w (1 .. $WRITERS) {
    open my $fh, '<', "$dir/acks.$w" or next;
    while (<$fh>) {
        chomp;
        my ($what, $id, $desc) = split / /;
        next if !defined $desc;
        $tried{$id}{$desc} = 1;
        next if $what ne 'ack';
        $n++;
        $want{$id} = 1;
    }
}
diag "$n writes acknowledged before kill -9";
cmp_ok $n, '>', 50, 'the storm was under way';

subtest 'the store loads after kill -9' => sub {
    my $raw = do { local $/; open my $f, '<', $sluice->prefix . '/data/store.json' or die; <$f> };
    my $doc = eval { JSON::PP::decode_json($raw) };
    ok $doc, 'store.json is complete JSON';
    my $check = system(sluice_bin(), '-t', '-c', $sluice->conf_file, '-p', $sluice->prefix);
    is $check, 0, 'sluice -t accepts it';
};

subtest 'every acknowledged write survived' => sub {
    $sluice->start;
    my $res;
    wait_for(sub { $res = admin_req($sluice, 'GET', $A); $res->{status} == 200 }, 10);
    is $res->{status}, 200, 'list';
    my %have = map { $_->{value}{id} => $_->{value}{desc} } @{ $res->{json}{list} };
    my @missing = grep { !exists $have{$_} } sort keys %want;
    is scalar @missing, 0, 'no acknowledged route missing'
        or diag "missing: @missing[0 .. ($#missing > 9 ? 9 : $#missing)]";
    my @bad;
    for my $id (grep { /^w/ } keys %want) {
        push @bad, $id if ($have{$id} // '') ne 'new';
    }
    is scalar @bad, 0, 'new routes hold what was written';
    for my $id (sort grep { /^base/ } keys %want) {
        ok $tried{$id}{ $have{$id} // '' }, "$id holds a value written in the storm";
    }
    my $r = http_req($sluice, 'GET', '/base1');
    isnt $r->{status}, 404, 'the routes are served';
    my @tmp = glob($sluice->prefix . '/data/store.json.tmp*');
    diag scalar(@tmp) . ' temporary file(s) left by the killed writers' if @tmp;
    is admin_put($sluice, "$A/after", { uri => '/after', upstream => $up })->{status}, 201,
       'writes work after the restart';
    @tmp = glob($sluice->prefix . '/data/store.json.tmp*');
    is scalar @tmp, 0, 'and the next write cleared stale temporary files';
};

done_testing;
