package Sluice::Test;
# Sluice::Test -- start the gateway and the mock LLM for a test, talk HTTP to them, and kill
# everything started when the test ends. Every server binds 127.0.0.1 on a port picked here,
# every wait has a deadline, every process runs in its own process group and is killed (group
# and all) by stop(), by the object's destructor or by the END block. POD at the end.
use strict;
use warnings;
use Config;
use Cwd qw(abs_path);
use Errno qw(EINTR EAGAIN ESRCH);
use Exporter qw(import);
use Fcntl qw(:flock O_RDWR O_CREAT);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use File::Spec;
use File::Temp qw(tempdir);
use IO::Select;
use IO::Socket::INET;
use JSON::PP ();
use POSIX qw(WNOHANG setpgid _exit);
use Scalar::Util qw(blessed weaken refaddr);
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(time sleep);

our @EXPORT = qw(start_sluice start_mock_llm admin_put admin_req post_json http_req raw_http
                 wait_for free_port sluice_bin);
our @EXPORT_OK = (@EXPORT, qw(parse_sse repo_root encode_json decode_json ADMIN_KEY VIEWER_KEY
                              deep_merge));
our %EXPORT_TAGS = (all => \@EXPORT_OK);

use constant ADMIN_KEY  => 'edd1c9f034335f136f87ad84b625c8f1';
use constant VIEWER_KEY => '4054f7cf07e344346cd3f287985e76a2';

my $JSON = JSON::PP->new->utf8->canonical;
my $JSON_PRETTY = JSON::PP->new->utf8->canonical->pretty;
my $JSON_IN = JSON::PP->new->utf8->allow_nonref;

my $ROOT = abs_path(dirname(__FILE__) . '/../../..');
my $START_TIMEOUT = $ENV{SLUICE_START_TIMEOUT} // 15;
my $STOP_TIMEOUT = 10;           # graceful stop, before SIGKILL
my $KILL_GRACE = 5;              # SIGTERM at cleanup, before SIGKILL

my %LIVE;                        # refaddr -> weak ref of every server object still running
my %PORT_LOCKS;                  # port -> lock handle, held for the life of this process

# A test killed by a signal still runs END, so its servers go with it.
for my $sig (qw(INT TERM HUP)) {
    next if defined $SIG{$sig} && $SIG{$sig} ne 'DEFAULT' && $SIG{$sig} ne '';
    my $num = { INT => 2, TERM => 15, HUP => 1 }->{$sig};
    $SIG{$sig} = sub { exit 128 + $num };
}

END {
    my $status = $?;
    for my $obj (grep { defined } values %LIVE) {
        $obj->_cleanup;
    }
    $? = $status;
}


sub _test_failing {
    return 0 if !Test::Builder->can('new');
    my $tb = Test::Builder->new;
    return $tb->can('is_passing') && !$tb->is_passing;
}


sub encode_json { $JSON->encode($_[0]) }
sub decode_json { $JSON_IN->decode($_[0]) }
sub repo_root { $ROOT }


sub sluice_bin {
    my $bin = $ENV{SLUICE_BIN} // 'build/sluice';
    return $bin =~ m{\A/} ? $bin : "$ROOT/$bin";
}


# ---------------------------------------------------------------------------------------------
# small helpers

sub wait_for {
    my ($cond, $timeout, $interval) = @_;
    $timeout //= 5;
    $interval //= 0.05;
    my $deadline = time + $timeout;
    while (1) {
        my $v = $cond->();
        return $v if $v;
        return 0 if time >= $deadline;
        sleep $interval;
    }
}


# Ports come from below the kernel's ephemeral range (so an outgoing connection cannot take one
# between the probe and the server's bind) and are locked with a file lock for the life of
# this process (so parallel test files never pick the same one).
sub free_port {
    my ($lo, $hi) = (10000, 30000);
    if (open my $fh, '<', '/proc/sys/net/ipv4/ip_local_port_range') {
        my ($elo, $ehi) = split ' ', (<$fh> // '');
        if ($elo && $elo > 12000) {
            ($lo, $hi) = (10000, $elo - 1);
        }
        elsif ($ehi && $ehi < 60000) {
            ($lo, $hi) = ($ehi + 1, 65000);
        }
    }
    my $dir = File::Spec->tmpdir . "/sluice-test-ports-$<";
    make_path($dir) if !-d $dir;

    for (1 .. 500) {
        my $port = $lo + int rand($hi - $lo);
        next if $PORT_LOCKS{$port};
        sysopen my $lock, "$dir/$port", O_RDWR | O_CREAT or next;
        if (!flock $lock, LOCK_EX | LOCK_NB) {
            close $lock;
            next;
        }
        my $probe = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
                                          Proto => 'tcp', Listen => 1, ReuseAddr => 1);
        if (!$probe) {
            close $lock;
            next;
        }
        close $probe;
        $PORT_LOCKS{$port} = $lock;
        return $port;
    }
    die "free_port: no free port found in $lo..$hi\n";
}


sub deep_merge {
    my ($base, $over) = @_;
    return _clone($over) if ref $base ne 'HASH' || ref $over ne 'HASH';
    my %out = %{ _clone($base) };
    for my $k (keys %$over) {
        my $v = $over->{$k};
        if (!defined $v) {
            delete $out{$k};
        }
        elsif (ref $v eq 'HASH' && ref $out{$k} eq 'HASH') {
            $out{$k} = deep_merge($out{$k}, $v);
        }
        else {
            $out{$k} = _clone($v);
        }
    }
    return \%out;
}


sub _clone {
    my ($v) = @_;
    return { map { $_ => _clone($v->{$_}) } keys %$v } if ref $v eq 'HASH';
    return [ map { _clone($_) } @$v ] if ref $v eq 'ARRAY';
    return $v;
}


sub _slurp {
    my ($file) = @_;
    open my $fh, '<', $file or return '';
    binmode $fh;
    local $/;
    my $s = <$fh>;
    return $s // '';
}


sub _spew {
    my ($file, $data) = @_;
    make_path(dirname($file));
    my $tmp = "$file.tmp.$$";
    open my $fh, '>', $tmp or die "cannot write $tmp: $!\n";
    binmode $fh;
    print $fh $data or die "cannot write $tmp: $!\n";
    close $fh or die "cannot write $tmp: $!\n";
    rename $tmp, $file or die "cannot rename $tmp to $file: $!\n";
}


sub _tail {
    my ($text, $n) = @_;
    my @l = split /\n/, $text // '';
    @l = @l[-$n .. -1] if @l > $n;
    return join "\n", @l;
}


sub _read_jsonl {
    my ($file) = @_;
    open my $fh, '<', $file or return [];
    flock $fh, LOCK_SH;
    my @out;
    while (my $line = <$fh>) {
        next if $line !~ /\S/;
        my $v = eval { $JSON_IN->decode($line) };
        if (!defined $v) {
            warn "$file: not JSON: $line" if $line =~ /\n\z/;     # a half-written last line
            next;                                                   # is expected; skip it
        }
        push @out, $v;
    }
    close $fh;
    return \@out;
}


sub _can_connect {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp',
                                  Timeout => 1);
    return 0 if !$s;
    close $s;
    return 1;
}


# Makes the child die with its parent (Linux prctl PR_SET_PDEATHSIG), so a test killed with
# SIGKILL does not leave servers behind.
sub _die_with_parent {
    my ($signum) = @_;
    my $nr = $Config{archname} =~ /x86_64/ ? 157 : $Config{archname} =~ /aarch64/ ? 167 : 0;
    syscall($nr, 1, $signum) if $nr;
}


# fork + exec in a new process group. %o: out (file for stdout+stderr, or a handle for stdout
# with err a file for stderr), env, dir, deathsig.
sub _spawn {
    my ($argv, %o) = @_;
    my $parent = $$;
    my $pid = fork;
    die "fork: $!\n" if !defined $pid;
    if ($pid == 0) {
        eval {
            setpgid(0, 0);
            _die_with_parent($o{deathsig} // 15);
            _exit(1) if getppid() != $parent;
            $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP CHLD PIPE);
            open STDIN, '<', '/dev/null';
            if (ref $o{out}) {
                open STDOUT, '>&', $o{out} or die "stdout: $!";
            }
            else {
                open STDOUT, '>>', $o{out} or die "$o{out}: $!";
            }
            open STDERR, '>>', ($o{err} // $o{out}) or die "stderr: $!" if !ref $o{err};
            $ENV{$_} = $o{env}{$_} for keys %{ $o{env} || {} };
            chdir $o{dir} if $o{dir};
            exec { $argv->[0] } @$argv or die "exec $argv->[0]: $!";
        };
        print STDERR "spawn: $@";
        _exit(127);
    }
    setpgid($pid, $pid);        # also here, so the group exists before the parent signals it
    return $pid;
}


# Waits for $pid to exit; returns its wait status, or undef at the deadline.
sub _wait_pid {
    my ($pid, $timeout) = @_;
    my $deadline = time + $timeout;
    while (1) {
        my $r = waitpid($pid, WNOHANG);
        return $? if $r == $pid;
        return -1 if $r == -1;          # not our child, or reaped already
        return undef if time >= $deadline;
        sleep 0.02;
    }
}


sub _exit_code {
    my ($status) = @_;
    return undef if !defined $status;
    return -1 if $status == -1;
    return 128 + ($status & 127) if $status & 127;
    return $status >> 8;
}


# ---------------------------------------------------------------------------------------------
# HTTP client: one fresh connection per request, no hidden headers, timestamps for every read

sub _target_url {
    my ($target, $path, $what) = @_;
    $path //= '/';
    return $target->$what($path) if blessed $target && $target->can($what);
    return "http://127.0.0.1:$target$path" if defined $target && $target =~ /\A\d+\z/;
    return "$target$path" if defined $target && $target =~ m{\Ahttps?://};
    die "not a server object, port or URL: " . ($target // 'undef') . "\n";
}


sub _body_and_type {
    my ($data) = @_;
    return (undef, undef) if !defined $data;
    return ($JSON->encode($data), 'application/json') if ref $data;
    return ($data, 'application/json');
}


sub admin_req {
    my ($sluice, $method, $path, $data, %opt) = @_;
    my ($body, $ctype) = _body_and_type($data);
    my %h = %{ $opt{headers} || {} };
    $h{'X-API-KEY'} = $opt{key} // ADMIN_KEY if !$opt{no_key};
    $h{'Content-Type'} = $ctype if defined $body && !grep { lc eq 'content-type' } keys %h;
    return _http($method, _target_url($sluice, $path, 'admin_url'),
                 %opt, headers => \%h, body => $body);
}


sub admin_put {
    my ($sluice, $path, $data, %opt) = @_;
    return admin_req($sluice, 'PUT', $path, $data, %opt);
}


sub post_json {
    my ($target, $path, $data, %opt) = @_;
    my ($body, $ctype) = _body_and_type($data);
    my %h = %{ $opt{headers} || {} };
    $h{'Content-Type'} = $ctype if defined $body && !grep { lc eq 'content-type' } keys %h;
    return _http('POST', _target_url($target, $path, 'url'), %opt, headers => \%h,
                 body => $body // '');
}


sub http_req {
    my ($target, $method, $path, %opt) = @_;
    my %h = %{ $opt{headers} || {} };
    my $body = $opt{body};
    if (ref $body) {
        $body = $JSON->encode($body);
        $h{'Content-Type'} = 'application/json' if !grep { lc eq 'content-type' } keys %h;
    }
    return _http($method, _target_url($target, $path, 'url'), %opt, headers => \%h,
                 body => $body);
}


sub _http {
    my ($method, $url, %opt) = @_;
    my $timeout = $opt{timeout} // 10;
    my $max_time = $opt{max_time} // 120;
    my $t0 = time;
    my $res = { status => 599, reason => '', headers => {}, header_list => [], body => '',
                json => undef, chunks => [], url => $url };

    my ($host, $port, $path) = $url =~ m{\Ahttp://([^/:]+)(?::(\d+))?(/[^#]*)?\z}
        or die "_http: bad URL $url\n";
    $port //= 80;
    $path //= '/';

    my $sock = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port, Proto => 'tcp',
                                     Timeout => $timeout);
    if (!$sock) {
        $res->{error} = $res->{body} = "connect to $host:$port failed: $@";
        $res->{time} = time - $t0;
        return $res;
    }
    binmode $sock;
    setsockopt($sock, IPPROTO_TCP, TCP_NODELAY, 1);

    my %h = %{ $opt{headers} || {} };
    my %lc = map { lc($_) => 1 } keys %h;
    my $req = "$method $path HTTP/1.1\r\n";
    $req .= "Host: $host:$port\r\n" if !$lc{host};
    for my $k (sort keys %h) {
        for my $v (ref $h{$k} eq 'ARRAY' ? @{ $h{$k} } : $h{$k}) {
            $req .= "$k: $v\r\n" if defined $v;
        }
    }
    my $body = $opt{body};
    if (defined $body && !$lc{'content-length'} && !$lc{'transfer-encoding'}) {
        $req .= "Content-Length: " . length($body) . "\r\n";
    }
    $req .= "Connection: close\r\n" if !$lc{connection};
    $req .= "\r\n";
    $req .= $body if defined $body;

    my $sel = IO::Select->new($sock);
    my $deadline = $t0 + $max_time;
    local $SIG{PIPE} = 'IGNORE';
    # A server may answer before it has read the body (413, 400): then stop sending and read.
    $res->{sent_all} = _send_all($sock, $req, $timeout, 1);

    my $buf = '';
    my $eof = 0;
    my $read = sub {
        return 0 if $eof;
        my $left = $deadline - time;
        $left = $timeout if $timeout < $left;
        if ($left <= 0 || !$sel->can_read($left)) {
            $res->{error} //= 'timeout';
            return 0;
        }
        my $n = sysread($sock, $buf, 65536, length $buf);
        if (!$n) {
            $res->{error} //= "read: $!" if !defined $n && !$!{ECONNRESET};
            $res->{error} //= 'connection reset' if !defined $n;
            $eof = 1;
            return 0;
        }
        return $n;
    };

    # status line and headers; 1xx interim responses are skipped
    my $head;
    while (1) {
        if ($buf =~ /\r?\n\r?\n/) {
            $head = substr($buf, 0, $+[0], '');
            if ($head =~ m{\AHTTP/\d\.\d 1\d\d} && $head !~ m{\AHTTP/\d\.\d 101}) {
                next;
            }
            last;
        }
        if (!$read->()) {
            $res->{error} //= 'connection closed before the response head';
            $res->{body} = $res->{error};
            $res->{raw} = $buf;
            $res->{time} = time - $t0;
            close $sock;
            return $res;
        }
    }
    $res->{ttfb} = time - $t0;

    my @lines = split /\r?\n/, $head;
    my $status_line = shift @lines;
    @{$res}{qw(version status reason)} = $status_line =~ m{\AHTTP/(\d\.\d) (\d{3}) ?(.*)\z};
    $res->{status} //= 599;
    for my $line (@lines) {
        my ($k, $v) = $line =~ /\A([^:]+):[ \t]*(.*?)[ \t]*\z/ or next;
        push @{ $res->{header_list} }, [$k, $v];
        $k = lc $k;
        $res->{headers}{$k} = exists $res->{headers}{$k} ? "$res->{headers}{$k}, $v" : $v;
    }

    my $keep = !$opt{discard_body};
    my $on_data = $opt{on_data};
    my $got = 0;
    my $emit = sub {
        my ($data) = @_;
        return if $data eq '';
        $got += length $data;
        if ($keep) {
            $res->{body} .= $data;
            push @{ $res->{chunks} }, [time, $data];
        }
        $on_data->($data, $res) if $on_data;
    };

    my $te = $res->{headers}{'transfer-encoding'} // '';
    my $cl = $res->{headers}{'content-length'};
    my $no_body = $method eq 'HEAD' || $res->{status} == 204 || $res->{status} == 304;
    if ($no_body) {
        # nothing
    }
    elsif ($te =~ /chunked/i) {
        $res->{chunked} = 1;
        CHUNK: while (1) {
            while ($buf !~ /\r?\n/) {
                $read->() or last CHUNK;
            }
            $buf =~ s/\A([^\r\n]*)\r?\n//;
            my ($hex) = $1 =~ /\A\s*([0-9A-Fa-f]+)/;
            if (!defined $hex) {
                $res->{error} //= 'bad chunk size line';
                last;
            }
            my $size = hex $hex;
            if ($size == 0) {
                while (1) {     # trailers
                    while ($buf !~ /\r?\n/) {
                        $read->() or last CHUNK;
                    }
                    $buf =~ s/\A([^\r\n]*)\r?\n//;
                    if ($1 eq '') {
                        $res->{complete} = 1;
                        last CHUNK;
                    }
                }
            }
            # hand over partial chunk data as it arrives, so timestamps are real
            my $left = $size;
            while ($left > 0) {
                if ($buf eq '') {
                    $read->() or last CHUNK;
                }
                my $take = length $buf < $left ? length $buf : $left;
                $emit->(substr($buf, 0, $take, ''));
                $left -= $take;
            }
            while (length $buf < 2 && $buf !~ /\A\r?\n/) {
                $read->() or last CHUNK;
            }
            $buf =~ s/\A\r?\n//;
        }
    }
    elsif (defined $cl && $cl =~ /\A\d+\z/) {
        my $left = $cl;
        while (1) {
            my $take = length $buf < $left ? length $buf : $left;
            $emit->(substr($buf, 0, $take, ''));
            $left -= $take;
            last if $left == 0;
            $read->() or last;
        }
        $res->{complete} = $left == 0 ? 1 : 0;
    }
    else {
        while (1) {
            $emit->($buf);
            $buf = '';
            $read->() or last;
        }
        $res->{complete} = $eof ? 1 : 0;
    }
    close $sock;

    $res->{complete} //= 0;
    $res->{body_length} = $got;
    $res->{time} = time - $t0;
    if ($keep && length $res->{body}) {
        my $ct = $res->{headers}{'content-type'} // '';
        if ($ct =~ m{text/event-stream}) {
            $res->{events} = parse_sse($res->{chunks});
        }
        $res->{json} = eval { $JSON_IN->decode($res->{body}) } if $res->{body} =~ /\A\s*[\[{"]/;
    }
    return $res;
}


# SSE text (a string, or chunks [[time, bytes], ...] as _http returns) -> events
# [{event, data, json, id, t}]; t is when the event's last byte arrived.
sub parse_sse {
    my ($in) = @_;
    my @chunks = ref $in ? @$in : ([undef, $in]);
    my @events;
    my $buf = '';
    for my $c (@chunks) {
        $buf .= $c->[1];
        while ($buf =~ /\r?\n\r?\n/) {
            my $block = substr($buf, 0, $+[0], '');
            my %ev = (event => 'message', t => $c->[0]);
            my @data;
            for my $line (split /\r?\n/, $block) {
                next if $line eq '' || $line =~ /\A:/;
                my ($k, $v) = $line =~ /\A([^:]*):? ?(.*)\z/;
                if ($k eq 'data') {
                    push @data, $v;
                }
                elsif ($k eq 'event' || $k eq 'id' || $k eq 'retry') {
                    $ev{$k} = $v;
                }
            }
            next if !@data && !exists $ev{id} && $ev{event} eq 'message';
            $ev{data} = join "\n", @data;
            $ev{json} = eval { $JSON_IN->decode($ev{data}) } if $ev{data} =~ /\A\s*[\[{]/;
            push @events, \%ev;
        }
    }
    return \@events;
}


# Writes $data, waiting at most $timeout seconds each time for the socket to take more; with
# $watch_read it stops as soon as the peer has something to say. Returns 1 when all was sent.
sub _send_all {
    my ($sock, $data, $timeout, $watch_read) = @_;
    my $sel = IO::Select->new($sock);
    my ($off, $len, $ok) = (0, length $data, 1);
    $sock->blocking(0);
    while ($off < $len) {
        my ($r, $w) = IO::Select->select($watch_read ? $sel : undef, $sel, undef, $timeout);
        if (!$w || ($r && @$r) || !@$w) {
            $ok = 0;
            last;
        }
        my $n = syswrite($sock, $data, $len - $off > 65536 ? 65536 : $len - $off, $off);
        if (!defined $n) {
            next if $!{EINTR} || $!{EAGAIN};
            $ok = 0;
            last;
        }
        $off += $n;
    }
    $sock->blocking(1);
    return $ok;
}


sub raw_http {
    my ($port, $bytes, %opt) = @_;
    $port = $port->port if blessed $port && $port->can('port');
    my $timeout = $opt{timeout} // 5;
    my $deadline = time + $timeout;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                     Proto => 'tcp', Timeout => $timeout)
        or die "raw_http: connect to 127.0.0.1:$port failed: $@\n";
    binmode $sock;
    setsockopt($sock, IPPROTO_TCP, TCP_NODELAY, 1);
    local $SIG{PIPE} = 'IGNORE';

    my $out = '';
    my $sel = IO::Select->new($sock);
    my $drain = sub {           # read what is already there, without waiting
        while ($sel->can_read(0)) {
            my $n = sysread($sock, $out, 65536, length $out);
            return 0 if !$n;
        }
        return 1;
    };

    my @pieces = ref $bytes eq 'ARRAY' ? @$bytes : ($bytes);
    my $first = 1;
    for my $piece (@pieces) {
        if (!$first) {
            sleep($opt{pause} // 0.05);
            $drain->() or last;
        }
        $first = 0;
        _send_all($sock, $piece, $timeout, 0) or last;
    }
    shutdown($sock, 1) if $opt{half_close};

    while (time < $deadline) {
        last if $opt{until} && $out =~ $opt{until};
        my $left = $deadline - time;
        last if $left <= 0 || !$sel->can_read($left);
        my $n = sysread($sock, $out, 65536, length $out);
        last if !$n;
    }
    close $sock;
    return $out;
}


# ---------------------------------------------------------------------------------------------
# the mock LLM

sub start_mock_llm {
    my (%opt) = @_;
    my $dir = tempdir('sluice-mock-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{SLUICE_KEEP});
    my $record = $opt{record} // "$dir/requests.jsonl";
    my $stderr = "$dir/stderr.log";

    pipe my $r, my $w or die "pipe: $!\n";
    my @argv = ($^X, "$ROOT/t/mock/llm.pl", '--port', $opt{port} // 0, '--record', $record);
    my $pid = _spawn(\@argv, out => $w, err => $stderr, dir => $ROOT);
    close $w;

    my $self = bless { pid => $pid, dir => $dir, record => $record, stderr_file => $stderr,
                       owner => $$, pipe => $r }, 'Sluice::Test::MockLLM';
    _register($self);

    my $sel = IO::Select->new($r);
    my $deadline = time + ($opt{timeout} // 10);
    my $line = '';
    while ($line !~ /\n/) {
        my $left = $deadline - time;
        if ($left <= 0 || !$sel->can_read($left) || !sysread($r, $line, 256, length $line)) {
            $self->_cleanup;
            die "start_mock_llm: no PORT line from the mock:\n" . _tail(_slurp($stderr), 20)
                . "\n";
        }
    }
    ($self->{port}) = $line =~ /\APORT (\d+)/
        or do { $self->_cleanup; die "start_mock_llm: unexpected output: $line" };
    return $self;
}


sub _register {
    my ($obj) = @_;
    $LIVE{ refaddr $obj } = $obj;
    weaken $LIVE{ refaddr $obj };
}


package Sluice::Test::MockLLM;

use strict;
use warnings;
use Fcntl qw(:flock);
use Scalar::Util qw(refaddr);
use Time::HiRes qw(time sleep);

sub port { $_[0]{port} }
sub pid { $_[0]{pid} }
sub record_file { $_[0]{record} }
sub url { "http://127.0.0.1:$_[0]{port}" . ($_[1] // '') }
sub requests { Sluice::Test::_read_jsonl($_[0]{record}) }
sub responses { Sluice::Test::_read_jsonl("$_[0]{record}.responses") }
sub stderr { Sluice::Test::_slurp($_[0]{stderr_file}) }


sub last_request {
    my ($self) = @_;
    my $all = $self->requests;
    return @$all ? $all->[-1] : undef;
}


sub wait_requests {
    my ($self, $n, $timeout) = @_;
    my $got = [];
    Sluice::Test::wait_for(sub { $got = $self->requests; @$got >= $n }, $timeout // 5);
    return $got;
}


sub clear {
    my ($self) = @_;
    for my $file ($self->{record}, "$self->{record}.responses") {
        open my $fh, '>>', $file or next;
        flock $fh, LOCK_EX;
        truncate $fh, 0;
        close $fh;
    }
    return $self;
}


sub ai_proxy_conf {
    my ($self, %over) = @_;
    return Sluice::Test::deep_merge({
        provider => 'openai-compatible',
        auth     => { header => { Authorization => 'Bearer test-key' } },
        options  => { model => 'mock-model' },
        override => { endpoint => $self->url('/v1/chat/completions') },
    }, \%over);
}


sub ai_instance {
    my ($self, $name, %over) = @_;
    return Sluice::Test::deep_merge({ name => $name, weight => 1, %{ $self->ai_proxy_conf } },
                                    \%over);
}


sub stop {
    my ($self) = @_;
    $self->_cleanup;
    return $self;
}


sub _cleanup {
    my ($self) = @_;
    return if $self->{owner} != $$ || $self->{stopped}++;
    my $pid = $self->{pid};
    Sluice::Test::_unregister($self);
    kill 'TERM', -$pid;
    if (!defined Sluice::Test::_wait_pid($pid, $KILL_GRACE)) {
        kill 'KILL', -$pid;
        Sluice::Test::_wait_pid($pid, 5);
    }
    kill 'KILL', -$pid;         # connection processes still in the group
    close $self->{pipe} if $self->{pipe};
}


sub DESTROY {
    my ($self) = @_;
    local ($@, $!, $?);
    $self->_cleanup;
}


package Sluice::Test;

sub _unregister {
    my ($obj) = @_;
    delete $LIVE{ refaddr $obj };
}


# ---------------------------------------------------------------------------------------------
# the gateway

sub start_sluice {
    my (%opt) = @_;
    my $attempts = (grep { $opt{$_} } qw(port admin_port metrics_port)) ? 1 : 3;
    for my $attempt (1 .. $attempts) {
        my $self = eval { _start_sluice_once(%opt) };
        return $self if $self;
        my $err = $@;
        die $err if $attempt == $attempts || $err !~ /address already in use|EADDRINUSE/i;
    }
}


sub _start_sluice_once {
    my (%opt) = @_;
    my $prefix = tempdir('sluice-test-XXXXXX', TMPDIR => 1, CLEANUP => 0);
    make_path("$prefix/conf", "$prefix/logs", "$prefix/data");

    my ($port, $admin_port, $metrics_port) =
        map { $opt{$_} // free_port() } qw(port admin_port metrics_port);

    my $conf = {
        listen   => ["127.0.0.1:$port"],
        workers  => $opt{workers} // 1,
        admin    => {
            listen => "127.0.0.1:$admin_port",
            keys   => [ { name => 'admin',  key => ADMIN_KEY,  role => 'admin' },
                        { name => 'viewer', key => VIEWER_KEY, role => 'viewer' } ],
            allow  => ['127.0.0.0/8'],
        },
        metrics   => { listen => "127.0.0.1:$metrics_port" },
        log_level => 'info',
        config    => { provider => 'store' },
    };

    my $routes_file = "$prefix/conf/routes.json";
    my $standalone = $opt{standalone} // (defined $opt{routes} ? { routes => $opt{routes} }
                                                                : undef);
    if ($standalone) {
        _spew($routes_file, $JSON_PRETTY->encode($standalone));
        $conf->{config} = { provider => 'file', file => $routes_file };
    }
    $conf = deep_merge($conf, $opt{config}) if $opt{config};

    for my $rel (sort keys %{ $opt{files} || {} }) {
        my $data = $opt{files}{$rel};
        _spew("$prefix/$rel", ref $data ? $JSON_PRETTY->encode($data) : $data);
    }
    my $conf_file = "$prefix/conf/sluice.json";
    _spew($conf_file, $JSON_PRETTY->encode($conf));

    my $bin = sluice_bin();
    if (!-x $bin) {
        remove_tree($prefix);
        die "start_sluice: $bin is not an executable (run make first)\n";
    }

    my $self = bless {
        owner => $$, prefix => $prefix, port => $port, admin_port => $admin_port,
        metrics_port => $metrics_port, conf => $conf, conf_file => $conf_file,
        routes_file => $routes_file, stderr_file => "$prefix/logs/stderr.log", bin => $bin,
        env => $opt{env}, args => $opt{args} || [], timeout => $opt{timeout} // $START_TIMEOUT,
    }, 'Sluice::Test::Sluice';
    _register($self);

    if (!eval { $self->start(expect_exit => $opt{expect_exit}); 1 }) {
        my $err = $@;
        $self->_cleanup;
        die $err;
    }
    return $self;
}


package Sluice::Test::Sluice;

use strict;
use warnings;
use File::Path qw(remove_tree);
use Time::HiRes qw(time sleep);

sub port { $_[0]{port} }
sub admin_port { $_[0]{admin_port} }
sub metrics_port { $_[0]{metrics_port} }
sub prefix { $_[0]{prefix} }
sub pid { $_[0]{pid} }
sub conf { $_[0]{conf} }
sub conf_file { $_[0]{conf_file} }
sub exit_status { $_[0]{exit_code} }
sub url { "http://127.0.0.1:$_[0]{port}" . ($_[1] // '') }
sub admin_url { "http://127.0.0.1:$_[0]{admin_port}" . ($_[1] // '') }
sub metrics_url { "http://127.0.0.1:$_[0]{metrics_port}" . ($_[1] // '') }
sub stderr { Sluice::Test::_slurp($_[0]{stderr_file}) }
sub error_log { Sluice::Test::_slurp("$_[0]{prefix}/logs/error.log") }
sub access_log { Sluice::Test::_read_jsonl("$_[0]{prefix}/logs/access.log") }


# (Re)starts the gateway with the same prefix, config and ports; waits for the traffic and
# Admin API ports, or with expect_exit for the process to exit.
sub start {
    my ($self, %opt) = @_;
    die "start: sluice is running already\n" if $self->{running};
    my @argv = ($self->{bin}, '-c', $self->{conf_file}, '-p', $self->{prefix},
                @{ $self->{args} });
    $self->{pid} = Sluice::Test::_spawn(\@argv, out => $self->{stderr_file},
                                        env => $self->{env}, dir => $ROOT);
    $self->{running} = 1;
    $self->{exit_code} = undef;

    my $timeout = $opt{timeout} // $self->{timeout};
    if ($opt{expect_exit}) {
        return $self if defined $self->wait_exit($timeout);
        $self->_kill;
        die "start_sluice: expected sluice to exit, still running after ${timeout}s\n";
    }

    my $deadline = time + $timeout;
    while (1) {
        my $code = $self->wait_exit(0);
        if (defined $code) {
            $self->_kill;
            die "start_sluice: sluice exited with status $code during start-up:\n"
                . Sluice::Test::_tail($self->stderr, 30) . "\n";
        }
        last if Sluice::Test::_can_connect($self->{port})
             && Sluice::Test::_can_connect($self->{admin_port});
        if (time >= $deadline) {
            $self->_kill;
            die "start_sluice: ports $self->{port}/$self->{admin_port} not accepting after "
                . "${timeout}s:\n" . Sluice::Test::_tail($self->stderr, 30) . "\n";
        }
        sleep 0.05;
    }
    return $self;
}


sub wait_access_log {
    my ($self, $n, $timeout) = @_;
    my $got = [];
    Sluice::Test::wait_for(sub { $got = $self->access_log; @$got >= $n }, $timeout // 5);
    return $got;
}


sub wait_error_log {
    my ($self, $re, $timeout) = @_;
    $re = qr/\Q$re\E/ if !ref $re;
    return Sluice::Test::wait_for(sub { $self->error_log =~ $re }, $timeout // 5);
}


# Exit code once the master has exited (0 = clean), or undef while it still runs at $timeout.
sub wait_exit {
    my ($self, $timeout) = @_;
    return $self->{exit_code} if !$self->{running};
    my $st = Sluice::Test::_wait_pid($self->{pid}, $timeout // 10);
    return undef if !defined $st;
    $self->{running} = 0;
    $self->{exit_code} = Sluice::Test::_exit_code($st);
    return $self->{exit_code};
}


sub alive {
    my ($self) = @_;
    return !defined $self->wait_exit(0);
}


sub worker_pids {
    my ($self) = @_;
    my @pids;
    for my $stat ($self->{running} ? glob('/proc/[0-9]*/stat') : ()) {
        my $s = Sluice::Test::_slurp($stat);
        my $i = rindex $s, ')';
        next if $i < 0;
        my (undef, $ppid) = split ' ', substr($s, $i + 2);
        push @pids, $stat =~ m{/proc/(\d+)/} if defined $ppid && $ppid == $self->{pid};
    }
    @pids = sort { $a <=> $b } @pids;
    return @pids;
}


sub signal {
    my ($self, $name) = @_;
    return 0 if !$self->{running};
    return kill $name, $self->{pid};
}


sub reload {
    my ($self, %opt) = @_;
    my $pid = Sluice::Test::_spawn([ $self->{bin}, '-s', 'reload', '-p', $self->{prefix} ],
                                   out => $self->{stderr_file}, dir => $ROOT);
    my $st = Sluice::Test::_wait_pid($pid, $opt{timeout} // 10);
    if (!defined $st) {
        kill 'KILL', -$pid;
        Sluice::Test::_wait_pid($pid, 2);
        die "reload: 'sluice -s reload' did not finish\n";
    }
    return Sluice::Test::_exit_code($st);
}


sub write_routes {
    my ($self, $data) = @_;
    $data = { routes => $data } if ref $data eq 'ARRAY';
    Sluice::Test::_spew($self->{routes_file}, $JSON_PRETTY->encode($data));
    return $self;
}


# SIGQUIT (graceful: in-flight requests finish), SIGKILL to the group after $timeout seconds.
# Returns the exit code (0 = clean; 137 when it had to be killed). The prefix stays until the
# object goes away, so logs can be read after a stop.
sub stop {
    my ($self, $timeout) = @_;
    return $self->{exit_code} if $self->{owner} != $$;
    if ($self->{running}) {
        kill 'QUIT', $self->{pid};
        if (!defined $self->wait_exit($timeout // $STOP_TIMEOUT)) {
            kill 'KILL', -$self->{pid};
            $self->wait_exit(5);
        }
    }
    kill 'KILL', -$self->{pid} if $self->{pid};     # anything left in its process group
    return $self->{exit_code};
}


# SIGTERM (fast stop), SIGKILL to the group after a grace period.
sub _kill {
    my ($self) = @_;
    return if $self->{owner} != $$ || !$self->{pid};
    if ($self->{running}) {
        kill 'TERM', $self->{pid};
        if (!defined $self->wait_exit($KILL_GRACE)) {
            kill 'KILL', -$self->{pid};
            $self->wait_exit(5);
        }
    }
    kill 'KILL', -$self->{pid};
}


sub _cleanup {
    my ($self) = @_;
    return if $self->{owner} != $$ || $self->{cleaned}++;
    $self->_diag_failure if Sluice::Test::_test_failing();
    $self->_kill;
    Sluice::Test::_unregister($self);
    remove_tree($self->{prefix}) if !$ENV{SLUICE_KEEP};
}


sub _diag_failure {
    my ($self) = @_;
    Test::More::diag("sluice in $self->{prefix} (SLUICE_KEEP=1 keeps it); tail of error.log:\n"
        . Sluice::Test::_tail($self->error_log, 15) . "\ntail of stderr.log:\n"
        . Sluice::Test::_tail($self->stderr, 15));
}


sub DESTROY {
    my ($self) = @_;
    local ($@, $!, $?);
    $self->_cleanup;
}


package Sluice::Test;

1;

__END__

=head1 NAME

Sluice::Test - servers and HTTP helpers for Sluice's integration tests

=head1 SYNOPSIS

  use strict; use warnings; use lib 't/lib'; use Test::More;
  use Sluice::Test qw(start_sluice start_mock_llm admin_put post_json);

  my $llm    = start_mock_llm();
  my $sluice = start_sluice();
  admin_put($sluice, '/apisix/admin/routes/1', { uri => '/v1/chat/completions',
      plugins => { 'ai-proxy' => $llm->ai_proxy_conf } });
  my $res = post_json($sluice, '/v1/chat/completions',
                      { messages => [{ role => 'user', content => 'hi' }] });
  is $res->{status}, 200;
  is $llm->last_request->{json}{model}, 'mock-model';
  done_testing;

=head1 DESCRIPTION

Exported by default: C<start_sluice start_mock_llm admin_put admin_req post_json http_req
raw_http wait_for free_port sluice_bin>. On request (or C<:all>): C<parse_sse repo_root
encode_json decode_json deep_merge ADMIN_KEY VIEWER_KEY>.

Every process started here runs in its own process group and dies with the test: C<stop>, the
object going out of scope, the END block (also after SIGINT/SIGTERM/SIGHUP, for which handlers
are installed unless the test set its own) and, should the test be SIGKILLed, the kernel
(PR_SET_PDEATHSIG sends the server SIGTERM). A gateway stopped (by any of these) after a test
has failed prints the tail of its error.log and stderr.log with C<diag>. C<SLUICE_KEEP=1> keeps
the temporary directories (the prefix and the mock's record).

=head1 FUNCTIONS

=head2 start_mock_llm(%opt)

Starts C<t/mock/llm.pl> on a free port (it reports the port itself, no race) and returns an
object. Options: C<port> (fixed port), C<record> (record file; default in a temp dir),
C<timeout> (start-up deadline, default 10 s). Methods:

=over

=item port, pid, url($path), record_file, stderr

C<url('/v1/x')> is C<http://127.0.0.1:PORT/v1/x>.

=item requests / last_request / wait_requests($n, $timeout = 5)

The recorded requests (arrayref of hashes: C<id method path query args version headers body
json time conn conn_seq remote_port>, see C<perldoc t/mock/llm.pl>); the last one (or undef);
wait until at least $n are recorded and return them. C<headers> has lowercased names;
C<body> is the raw byte string; C<json> the decoded body (character strings) or undef. Requests
are recorded before the mock answers, so once a client has its response the request is there.

=item responses

How each response ended: arrayref of C<{id, path, status, outcome, events, bytes, time}>,
outcome C<complete>, C<cut> (x-mock-cut) or C<client_closed> (the gateway hung up first;
then C<status> is 0 if it hung up before the response head, e.g. during x-mock-delay-ms).

=item clear

Forgets recorded requests and responses (ids keep counting).

=item ai_proxy_conf(%over)

C<{provider =E<gt> 'openai-compatible', auth =E<gt> {header =E<gt> {Authorization =E<gt>
'Bearer test-key'}}, options =E<gt> {model =E<gt> 'mock-model'}, override =E<gt> {endpoint
=E<gt> url('/v1/chat/completions')}}> deep-merged with %over: hashes merge key by key, other
values replace, C<undef> deletes a key (C<options =E<gt> {model =E<gt> undef}>).

=item ai_instance($name, %over)

The same as an ai-proxy-multi instance: adds C<name =E<gt> $name, weight =E<gt> 1>.

=item stop

SIGTERM to the mock's process group, SIGKILL after 5 s.

=back

=head2 start_sluice(%opt)

Writes C<$prefix/conf/sluice.json> (prefix: a fresh temp dir with C<conf/ logs/ data/>) and
runs C<sluice_bin() -c $prefix/conf/sluice.json -p $prefix> from the repository root, in its
own process group, stdout and stderr to C<$prefix/logs/stderr.log>. Returns once the traffic
and Admin API ports accept TCP connections (deadline C<$ENV{SLUICE_START_TIMEOUT}> or 15 s);
dies with the tail of stderr.log if it exits or the deadline passes. When the ports were picked
here and the start fails with "address already in use", it retries twice with new ports.

The node config: C<listen =E<gt> ["127.0.0.1:PORT"]>, C<workers =E<gt> $opt{workers} // 1>,
C<admin =E<gt> {listen, keys =E<gt> [admin key ADMIN_KEY role admin, viewer key VIEWER_KEY
role viewer], allow =E<gt> ['127.0.0.0/8']}>, C<metrics =E<gt> {listen}>,
C<log_level =E<gt> 'info'>, C<config =E<gt> {provider =E<gt> 'store'}>.

Options:

=over

=item routes =E<gt> [...] / standalone =E<gt> {routes =E<gt> [...], upstreams =E<gt> [...]}

Written to C<$prefix/conf/routes.json>; the config becomes
C<{provider =E<gt> 'file', file =E<gt> that path}>.

=item config =E<gt> {...}

Deep-merged over the node config last (C<undef> deletes a key).

=item workers, port, admin_port, metrics_port, env =E<gt> {...}, args =E<gt> [...],
files =E<gt> {'relative/path' =E<gt> text or data}, timeout

Extra environment, extra command-line arguments, files written under the prefix before start
(a reference is written as JSON), start-up deadline.

=item expect_exit =E<gt> 1

For start-up failure tests: do not wait for the ports, wait for the process to exit and return
the object (C<exit_status>, C<stderr>); dies if it is still running at the deadline.

=back

Methods:

=over

=item port, admin_port, metrics_port, prefix, pid, conf, conf_file

C<pid> is the master's. C<conf> is the node config as written.

=item url($path), admin_url($path), metrics_url($path)

=item worker_pids

The master's child processes (from C</proc/*/stat>), sorted; in scalar context their count.

=item reload(%opt)

Runs C<sluice -s reload -p PREFIX> and waits for it (deadline 10 s); returns its exit code.
Does not wait for the reload to take effect: follow it with C<wait_for>.

=item signal($name)

C<kill $name, master>.

=item stop($timeout = 10)

SIGQUIT, wait for the master to exit, SIGKILL the group after the timeout (and anything left in
the group in any case). Returns the exit code (0 = clean stop; 137 when it had to be killed).
The prefix and its logs stay until the object goes away.

=item start(%opt)

Starts the stopped gateway again: same prefix (so the same C<data/store.json>), config and
ports; waits as start_sluice does. Options C<timeout>, C<expect_exit>.

=item wait_exit($timeout = 10), alive, exit_status

C<wait_exit>: the exit code once the master has exited (128 + signal number if a signal
killed it), or undef if it still runs at the deadline. C<exit_status>: the same without
waiting.

=item error_log, stderr

The contents of C<logs/error.log> and C<logs/stderr.log>.

=item access_log / wait_access_log($n, $timeout = 5)

C<logs/access.log> decoded line by line (arrayref); the gateway buffers it, so the second form
polls until there are at least $n lines and returns what it has at the deadline.

=item wait_error_log($regex_or_string, $timeout = 5)

True once error.log matches.

=item write_routes($arrayref_or_hashref)

Rewrites C<conf/routes.json> atomically (temp file + rename, so a new inode). An arrayref
becomes C<{routes =E<gt> ...}>. Meaningful with the file config provider (C<routes> or
C<standalone>).

=back

=head2 admin_req($sluice, $method, $path, $data, %opt)

A request to the Admin API with C<X-API-KEY: ADMIN_KEY>. C<$data>: a reference is sent as JSON,
a string as it is, undef sends no body. Options: C<key> (another key), C<no_key>, C<headers>,
C<timeout>. Returns the response hash (below).

=head2 admin_put($sluice, $path, $data, %opt)

C<admin_req($sluice, 'PUT', ...)>.

=head2 post_json($target, $path, $data, %opt)

POST with C<Content-Type: application/json> (unless C<headers> sets one); C<$data> a reference
(encoded) or a string (sent as it is). C<$target>: a gateway or mock object, a port number or a
base URL.

=head2 http_req($target, $method, $path, %opt)

Any request. Options: C<body> (string, or a reference sent as JSON), C<headers> (a hash; a
value may be an arrayref for repeated headers; C<Host> may be set), C<timeout>
(inactivity, default 10 s), C<max_time> (whole request, default 120 s), C<discard_body>
(count bytes only), C<on_data> (C<sub { my ($bytes, $res) = @_ }> per read).

Every request uses a new connection and sends C<Connection: close> unless C<headers> names
C<Connection>. The response hash: C<status> (599 when no response head arrived), C<reason>,
C<headers> (lowercased names; repeated headers joined with ", "), C<header_list>
(C<[[name, value], ...]> as sent), C<body> (de-chunked), C<json> (decoded body or undef),
C<chunks> (C<[[time, bytes], ...]> per read, for timing), C<events> (for text/event-stream:
C<parse_sse> of the chunks), C<chunked>, C<complete> (the body ended properly: terminating
chunk, full Content-Length or EOF), C<error> (timeout, reset ...), C<time> (seconds),
C<ttfb> (seconds to the response head), C<body_length>.

=head2 parse_sse($text_or_chunks)

SSE text, or C<chunks> as above, to C<[{event, data, json, id, t}, ...]>: C<event> defaults to
"message", multi-line data is joined with "\n", C<json> is the decoded data when it is JSON,
C<t> the arrival time of the event's last byte.

=head2 raw_http($port_or_server, $bytes, %opt)

Sends C<$bytes> (or each string of an arrayref, C<pause> seconds apart, default 0.05) over a
new TCP connection and returns everything read until the server closes, or C<timeout>
(default 5 s) passes, or the text read matches C<until> (a regex). C<half_close> shuts down the
writing side after sending.

=head2 wait_for($sub, $timeout = 5, $interval = 0.05)

Calls C<$sub> until it returns true; returns that value, or 0 at the deadline.

=head2 free_port

A port on 127.0.0.1 free right now, below the kernel's ephemeral range, and held (file lock in
C</tmp/sluice-test-ports-UID>) so no other test process gets it.

=head2 sluice_bin

C<$ENV{SLUICE_BIN} // 'build/sluice'>, made absolute against the repository root.

=cut
