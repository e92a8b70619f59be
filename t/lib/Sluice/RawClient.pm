package Sluice::RawClient;
# A raw HTTP/1.1 client over one TCP connection, for tests of framing the usual clients hide:
# keep-alive, pipelining, chunked bodies, Expect, timeouts. connect_to($port) -> $c;
# send_bytes($c, $bytes); read_resp($c, $head_only, $timeout) -> {status, version, headers,
# body, ...}; closed_by_server($c, $timeout). Every read has a deadline.
# exchange($sluice, $bytes, $wait): one request's raw bytes on a fresh connection ->
# {raw, closed, status, headers, body, json, responses}.
use strict;
use warnings;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time);
use Exporter 'import';
use Sluice::Test qw(decode_json raw_http);

our @EXPORT_OK = qw(connect_to fill read_resp send_bytes closed_by_server exchange
                    send_get read_all);

sub connect_to {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 3) or die "connect: $@";
    binmode $s;
    return { sock => $s, buf => '' };
}

sub fill {
    my ($c, $deadline) = @_;
    my $left = $deadline - time;
    return 0 if $left <= 0 || !IO::Select->new($c->{sock})->can_read($left);
    my $n = sysread($c->{sock}, $c->{buf}, 65536, length $c->{buf});
    return $n ? $n : 0;
}

# reads one response; $head_only for HEAD
sub read_resp {
    my ($c, $head_only, $timeout) = @_;
    my $deadline = time + ($timeout // 5);
    my $end;
    while (($end = index $c->{buf}, "\r\n\r\n") < 0) {
        fill($c, $deadline) or return { status => 0, error => 'no head', raw => $c->{buf} };
    }
    my $head = substr($c->{buf}, 0, $end + 4, '');
    my ($version, $status) = $head =~ m{\AHTTP/(1\.[01]) (\d{3})};
    my %h;
    for my $line (split /\r\n/, $head) {
        my ($k, $v) = $line =~ /\A([^:]+):\s*(.*)\z/ or next;
        $h{lc $k} = $v;
    }
    my $r = { status => $status, version => $version, headers => \%h, body => '' };
    return $r if $head_only || $status == 204 || $status == 304;
    if (($h{'transfer-encoding'} // '') =~ /chunked/) {
        while (1) {
            until ($c->{buf} =~ /\r\n/) { fill($c, $deadline) or return $r }
            $c->{buf} =~ s/\A([0-9a-fA-F]+)[^\r\n]*\r\n// or return $r;
            my $size = hex $1;
            if ($size == 0) {
                until ($c->{buf} =~ /\A(?:[^\r\n]+\r\n)*\r\n/) { fill($c, $deadline) or return $r }
                $c->{buf} =~ s/\A(?:[^\r\n]+\r\n)*\r\n//;
                last;
            }
            while (length $c->{buf} < $size + 2) { fill($c, $deadline) or return $r }
            $r->{body} .= substr($c->{buf}, 0, $size + 2, '');
            chop $r->{body}; chop $r->{body};
        }
    }
    elsif (defined $h{'content-length'}) {
        while (length $c->{buf} < $h{'content-length'}) { fill($c, $deadline) or return $r }
        $r->{body} = substr($c->{buf}, 0, $h{'content-length'}, '');
    }
    else {
        1 while fill($c, $deadline);
        $r->{body} = $c->{buf};
        $c->{buf} = '';
    }
    $r->{json} = eval { decode_json($r->{body}) };
    return $r;
}

sub send_bytes { my ($c, $b) = @_; syswrite($c->{sock}, $b) == length $b or die "write: $!" }

# true when the server closes within $wait seconds (and sends nothing more)
sub closed_by_server {
    my ($c, $wait) = @_;
    my $deadline = time + $wait;
    my $before = length $c->{buf};
    while (time < $deadline) {
        my $left = $deadline - time;
        return 0 if !IO::Select->new($c->{sock})->can_read($left);
        my $n = sysread($c->{sock}, $c->{buf}, 65536, length $c->{buf});
        return length $c->{buf} == $before if !$n;
    }
    return 0;
}

# raw bytes in, the parsed answer out; closed: the server hung up before $wait ran out
sub exchange {
    my ($sluice, $bytes, $wait) = @_;
    $wait //= 2;
    my $t0 = time;
    my $raw = raw_http($sluice, $bytes, timeout => $wait);
    my %r = (raw => $raw, closed => time - $t0 < $wait - 0.3, status => 0, headers => {});
    if ($raw =~ /\AHTTP\/1\.[01] (\d{3})[^\r\n]*\r\n(.*?)\r\n\r\n/s) {
        $r{status} = $1;
        for my $line (split /\r\n/, $2) {
            my ($k, $v) = split /:\s*/, $line, 2;
            $r{headers}{lc $k} = $v;
        }
        my $rest = substr($raw, $+[0]);
        $r{body} = substr($rest, 0, $r{headers}{'content-length'} // length $rest);
        $r{json} = eval { decode_json($r{body}) };
        $r{responses} = () = $raw =~ /^HTTP\/1\.[01] \d{3}/mg;
    }
    return \%r;
}

# send_get($port, $path): a GET with Connection: close on a fresh socket, not read yet
sub send_get {
    my ($port, $path) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 3) or die "connect: $@";
    syswrite $s, "GET $path HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    return $s;
}


# read_all($sock, $max_seconds): everything until the server closes or the time is up
sub read_all {
    my ($s, $max) = @_;
    my ($buf, $deadline) = ('', time + $max);
    my $sel = IO::Select->new($s);
    while (time < $deadline) {
        last if !$sel->can_read($deadline - time);
        sysread($s, $buf, 65536, length $buf) or last;
    }
    return $buf;
}

1;
