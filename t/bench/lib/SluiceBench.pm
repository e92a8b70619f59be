package SluiceBench;
# SluiceBench -- what the benchmark drivers (t/bench/core.pl, t/bench/ai/bench.pl) share:
# starting processes that die with the driver, reading /proc, and small numeric helpers.
# Loopback only; nothing here starts load by itself.
use strict;
use warnings;
use Config;
use IO::Socket::INET;
use POSIX qw(setpgid _exit sysconf _SC_CLK_TCK);
use Exporter qw(import);

our @EXPORT_OK = qw(spawn can_connect slurp spew child_pids pin cpu_seconds to_ms median);

my $TICK = sysconf(_SC_CLK_TCK()) || 100;


# fork + exec in a new process group; the child gets SIGTERM when the driver dies, even by
# SIGKILL (prctl PR_SET_PDEATHSIG), so no nginx outlives a killed benchmark.
sub spawn {
    my ($argv, $log) = @_;
    my $pid = fork // die "fork: $!\n";
    if ($pid == 0) {
        setpgid(0, 0);
        my $prctl = $Config{archname} =~ /x86_64/ ? 157 : $Config{archname} =~ /aarch64/ ? 167
                  : 0;
        syscall($prctl, 1, 15) if $prctl;
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $log;
        open STDERR, '>>', $log;
        exec { $argv->[0] } @$argv or _exit(127);
    }
    setpgid($pid, $pid);
    return $pid;
}


sub can_connect {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp',
                                  Timeout => 1) or return 0;
    close $s;
    return 1;
}


sub slurp {
    my ($file) = @_;
    open my $fh, '<', $file or return '';
    local $/;
    return scalar <$fh>;
}


sub spew {
    my ($file, $data) = @_;
    open my $fh, '>', $file or die "cannot write $file: $!\n";
    print $fh $data;
    close $fh or die "cannot write $file: $!\n";
}


sub child_pids {
    my ($ppid) = @_;
    my @pids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        my $s = slurp($stat);
        my $i = rindex $s, ')';
        next if $i < 0;
        my (undef, $pp) = split ' ', substr($s, $i + 2);
        push @pids, $stat =~ m{/proc/(\d+)/} if defined $pp && $pp == $ppid;
    }
    return sort { $a <=> $b } @pids;
}


# Moves a process tree (given its pids) onto one CPU, when BENCH_PIN is set.
sub pin {
    my ($cpu, @pids) = @_;
    return if !defined $cpu;
    system("taskset -a -c -p $cpu $_ >/dev/null 2>&1") for @pids;
}


# utime + stime of the processes, in seconds
sub cpu_seconds {
    my $t = 0;
    for my $pid (@_) {
        my $s = slurp("/proc/$pid/stat");
        my $i = rindex $s, ')';
        next if $i < 0;
        my @f = split ' ', substr($s, $i + 2);
        $t += $f[11] + $f[12];
    }
    return $t / $TICK;
}


sub to_ms {
    my ($v, $unit) = @_;
    return $v / 1000 if $unit eq 'us';
    return $v if $unit eq 'ms';
    return $v * 1000 if $unit eq 's';
    return $v * 60000 if $unit eq 'm';
    return undef;
}


sub median {
    my @v = sort { $a <=> $b } grep { defined } @_;
    return undef if !@v;
    return $v[$#v / 2] if @v % 2;
    return ($v[@v / 2 - 1] + $v[@v / 2]) / 2;
}

1;
