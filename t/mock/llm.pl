#!/usr/bin/perl
# llm.pl -- a mock LLM / HTTP upstream for Sluice's tests.
#
#   perl t/mock/llm.pl --port N [--record FILE | --no-record]
#
# Listens on 127.0.0.1:N (N = 0 picks a free port) and prints "PORT <n>\n" on stdout once it
# accepts connections; nothing else ever goes to stdout, errors go to stderr. One process per
# connection (fork), so a slow stream never holds up another connection; inside a connection
# requests are served in order (keep-alive, pipelining, Content-Length and chunked bodies,
# Expect: 100-continue).
#
# Every request (except /__mock/*) is recorded once its body is read, before the response, as
# one JSON line appended to FILE under flock:
#   {id, method, path, query, args, version, headers, body, json, time, conn, conn_seq,
#    remote_port}
# How each response ended is appended to FILE.responses:
#   {id, path, status, outcome (complete|cut|client_closed), events, bytes, time}
#
# Endpoints (the path before "?"):
#   .../chat/completions, .../completions   OpenAI chat (JSON or SSE when "stream": true)
#   .../v1/messages                         Anthropic Messages
#   .../v1/responses, /responses            OpenAI Responses
#   .../embeddings                          OpenAI embeddings (8 dimensions)
#   /echo, /echo/*                          what was received, as JSON
#   /status/NNN  /delay/MS  /sse  /bytes/N  /static.json
#   GET /__mock/requests, POST /__mock/clear
# Control headers (or query params: x-mock-foo-bar -> mock_foo_bar; headers win):
#   x-mock-status, x-mock-delay-ms, x-mock-chunk-delay-ms, x-mock-events, x-mock-answer,
#   x-mock-invalid-json, x-mock-cut, x-mock-chunk-split, x-mock-usage (0 | p,c[,t]),
#   x-mock-tool-call (function name), x-mock-content-type, x-mock-header ("Name: value").
# See the POD at the end for the details.
use strict;
use warnings;
use Digest::MD5 qw(md5);
use Errno qw(EINTR EAGAIN);
use Fcntl qw(:flock O_RDWR O_CREAT SEEK_SET SEEK_END);
use File::Temp qw(tempdir);
use Getopt::Long qw(GetOptions);
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(WNOHANG floor);
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(time sleep);

my $JSON = JSON::PP->new->utf8->canonical;
my $JSON_IN = JSON::PP->new->utf8->allow_nonref;
my $TRUE = JSON::PP::true;
my $FALSE = JSON::PP::false;

my $MAX_HEAD = 1024 * 1024;     # request line + headers
my $IDLE_TIMEOUT = 120;         # seconds a kept-alive connection may sit idle
my $READ_TIMEOUT = 60;          # seconds to wait for the rest of a started request
my $SPLIT_PAUSE = 0.005;        # seconds between the pieces of a split SSE event
my $DEFAULT_ANSWER = 'Hello from mock';
my $DEFAULT_MODEL = 'mock-model';

my %REASON = (
    100 => 'Continue', 200 => 'OK', 201 => 'Created', 202 => 'Accepted', 204 => 'No Content',
    301 => 'Moved Permanently', 302 => 'Found', 304 => 'Not Modified', 400 => 'Bad Request',
    401 => 'Unauthorized', 403 => 'Forbidden', 404 => 'Not Found',
    405 => 'Method Not Allowed', 408 => 'Request Timeout', 409 => 'Conflict',
    413 => 'Payload Too Large', 422 => 'Unprocessable Entity', 429 => 'Too Many Requests',
    500 => 'Internal Server Error', 502 => 'Bad Gateway', 503 => 'Service Unavailable',
    504 => 'Gateway Timeout', 529 => 'Overloaded',
);

my ($opt_port, $opt_record, $opt_no_record) = (0, undef, 0);
GetOptions('port=i' => \$opt_port, 'record=s' => \$opt_record, 'no-record' => \$opt_no_record)
    or die "usage: $0 --port N [--record FILE | --no-record]\n";

my $tmpdir;
if (!defined $opt_record && !$opt_no_record) {
    $tmpdir = tempdir('sluice-mock-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    $opt_record = "$tmpdir/requests.jsonl";
}

if (defined $opt_record) {
    # Create it now so readers never race its creation.
    open my $fh, '>>', $opt_record or die "llm.pl: cannot open $opt_record: $!\n";
    close $fh;
}

$SIG{PIPE} = 'IGNORE';

my $listener = IO::Socket::INET->new(
    LocalAddr => '127.0.0.1',
    LocalPort => $opt_port,
    Proto     => 'tcp',
    Listen    => 1024,
    ReuseAddr => 1,
) or die "llm.pl: cannot listen on 127.0.0.1:$opt_port: $@\n";

my $master_pid = $$;
my %kids;

$SIG{CHLD} = sub {
    while ((my $pid = waitpid(-1, WNOHANG)) > 0) {
        delete $kids{$pid};
    }
};

my $stopping = 0;
for my $sig (qw(TERM INT HUP)) {
    $SIG{$sig} = sub { $stopping = 1 };
}

{
    local $| = 1;
    print "PORT ", $listener->sockport, "\n";
}

while (!$stopping) {
    my $client = $listener->accept;
    if (!$client) {
        next if $!{EINTR} || $!{EAGAIN} || $!{ECONNABORTED};
        last if $stopping;
        warn "llm.pl: accept: $!\n";
        sleep 0.05;
        next;
    }

    my $pid = fork;
    if (!defined $pid) {
        warn "llm.pl: fork: $!\n";
        close $client;
        next;
    }

    if ($pid == 0) {
        $SIG{$_} = 'DEFAULT' for qw(TERM INT HUP CHLD);
        $tmpdir = undef;                # only the listener removes the temp dir
        close $listener;
        eval { serve_connection($client); 1 } or warn "llm.pl: connection: $@";
        POSIX::_exit(0);
    }

    $kids{$pid} = 1;
    close $client;
}

kill 'TERM', keys %kids if %kids;
exit 0;


# ---------------------------------------------------------------------------------------------
# connection: reading requests

sub serve_connection {
    my ($sock) = @_;

    setsockopt($sock, IPPROTO_TCP, TCP_NODELAY, 1);
    binmode $sock;

    my $c = {
        sock   => $sock,
        sel    => IO::Select->new($sock),
        buf    => '',
        conn   => "$$",
        seq    => 0,
        peer   => $sock->peerport,
        closed => 0,
    };

    while (!$c->{closed}) {
        my $req = read_request($c) or last;
        $c->{seq}++;
        my $keep = handle_request($c, $req);
        last if !$keep;
    }

    close $sock;
}


# Reads more bytes into $c->{buf}, waiting at most until $deadline. Returns the number of
# bytes read, 0 at EOF / error / timeout, and gives up when the listener is gone.
sub fill {
    my ($c, $deadline) = @_;

    while (1) {
        my $left = $deadline - time;
        return 0 if $left <= 0;
        return 0 if getppid() != $master_pid;
        my @ready = $c->{sel}->can_read($left > 1 ? 1 : $left);
        next if !@ready;
        my $n = sysread($c->{sock}, $c->{buf}, 65536, length $c->{buf});
        if (!defined $n) {
            next if $!{EINTR} || $!{EAGAIN};
            return 0;
        }
        return $n;
    }
}


sub read_request {
    my ($c) = @_;

    my $deadline = time + $IDLE_TIMEOUT;
    my $end;
    while (1) {
        $c->{buf} =~ s/\A(?:\r?\n)+//;  # tolerate stray CRLFs between requests
        if ($c->{buf} =~ /\r?\n\r?\n/) {
            $end = $+[0];
            last;
        }
        if (length $c->{buf} > $MAX_HEAD) {
            bad_request($c, 'request head too large');
            return;
        }
        $deadline = time + $READ_TIMEOUT if length $c->{buf};
        fill($c, $deadline) or return;
    }

    my $head = substr($c->{buf}, 0, $end, '');
    my @lines = split /\r?\n/, $head;
    my $start = shift @lines // '';
    my ($method, $target, $version) = $start =~ m{\A([A-Za-z]+) +(\S+) +HTTP/(\d\.\d)\z};
    if (!$method) {
        bad_request($c, 'malformed request line');
        return;
    }

    my (%headers, @raw);
    for my $line (@lines) {
        my ($name, $value) = $line =~ /\A([^:\s]+):[ \t]*(.*?)[ \t]*\z/;
        if (!defined $name) {
            bad_request($c, 'malformed header line');
            return;
        }
        push @raw, [$name, $value];
        $name = lc $name;
        $headers{$name} = exists $headers{$name} ? "$headers{$name}, $value" : $value;
    }

    my ($path, $query) = $target =~ /\A([^?]*)(?:\?(.*))?\z/s;
    my $req = {
        method  => uc $method,
        target  => $target,
        path    => $path,
        query   => $query // '',
        version => $version,
        headers => \%headers,
        raw     => \@raw,
    };

    if (($headers{expect} // '') =~ /100-continue/i && $version eq '1.1') {
        write_all($c, "HTTP/1.1 100 Continue\r\n\r\n") or return;
    }

    my $te = $headers{'transfer-encoding'} // '';
    if ($te =~ /chunked/i) {
        defined($req->{body} = read_chunked($c)) or return;
    }
    elsif (defined $headers{'content-length'}) {
        my $len = $headers{'content-length'};
        if ($len !~ /\A\d+\z/) {
            bad_request($c, 'bad content-length');
            return;
        }
        $deadline = time + $READ_TIMEOUT;
        while (length $c->{buf} < $len) {
            fill($c, $deadline) or return;
        }
        $req->{body} = substr($c->{buf}, 0, $len, '');
    }
    else {
        $req->{body} = '';
    }

    $req->{time} = time;
    $req->{args} = parse_query($req->{query});
    return $req;
}


sub read_chunked {
    my ($c) = @_;

    my $deadline = time + $READ_TIMEOUT;
    my $body = '';
    while (1) {
        while ($c->{buf} !~ /\r?\n/) {
            fill($c, $deadline) or return;
        }
        $c->{buf} =~ s/\A([^\r\n]*)\r?\n// or return;
        my ($hex) = $1 =~ /\A\s*([0-9A-Fa-f]+)/;
        if (!defined $hex) {
            bad_request($c, 'bad chunk size');
            return;
        }
        my $size = hex $hex;
        if ($size == 0) {
            # trailers, up to the empty line
            while (1) {
                while ($c->{buf} !~ /\r?\n/) {
                    fill($c, $deadline) or return;
                }
                $c->{buf} =~ s/\A([^\r\n]*)\r?\n//;
                return $body if $1 eq '';
            }
        }
        while (length $c->{buf} < $size + 2) {
            fill($c, $deadline) or return;
        }
        $body .= substr($c->{buf}, 0, $size, '');
        $c->{buf} =~ s/\A\r?\n//;
    }
}


sub bad_request {
    my ($c, $why) = @_;
    warn "llm.pl: $why\n";
    my $body = $JSON->encode({ error => { message => $why, type => 'invalid_request_error' } });
    write_all($c, "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                . "Content-Length: " . length($body) . "\r\nConnection: close\r\n\r\n$body");
    $c->{closed} = 1;
}


sub parse_query {
    my ($q) = @_;
    my %args;
    for my $pair (split /[&;]/, $q // '') {
        next if $pair eq '';
        my ($k, $v) = split /=/, $pair, 2;
        $_ = url_decode($_) for $k, $v;
        $v //= '';
        if (exists $args{$k}) {
            $args{$k} = [ $args{$k} ] if !ref $args{$k};
            push @{ $args{$k} }, $v;
        }
        else {
            $args{$k} = $v;
        }
    }
    return \%args;
}


sub url_decode {
    my ($s) = @_;
    return undef if !defined $s;
    $s =~ tr/+/ /;
    $s =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge;
    return $s;
}


# ---------------------------------------------------------------------------------------------
# recording

sub record_request {
    my ($c, $req) = @_;

    my $json;
    if (length $req->{body}) {
        $json = eval { $JSON_IN->decode($req->{body}) };
    }
    $req->{json} = $json;

    if (!defined $opt_record) {
        $req->{id} = $$ * 100000 + $c->{seq};
        return;
    }

    open my $fh, '>>', $opt_record or do { warn "llm.pl: $opt_record: $!\n"; return };
    binmode $fh;
    flock $fh, LOCK_EX or warn "llm.pl: flock: $!\n";
    $req->{id} = next_id();

    my $line = $JSON->encode({
        id          => $req->{id} + 0,
        method      => $req->{method},
        path        => $req->{path},
        query       => $req->{query},
        args        => $req->{args},
        version     => $req->{version},
        headers     => $req->{headers},
        body        => $req->{body},
        json        => $json,
        time        => $req->{time},
        conn        => $c->{conn},
        conn_seq    => $c->{seq},
        remote_port => $c->{peer},
    });
    seek $fh, 0, SEEK_END;
    syswrite $fh, "$line\n";
    close $fh;                          # releases the lock
}


# A counter shared by every connection process; called with the record file locked.
sub next_id {
    sysopen my $fh, "$opt_record.seq", O_RDWR | O_CREAT or return int(time * 1000) % 1e9;
    my $n = <$fh> // 0;
    $n = ($n =~ /(\d+)/) ? $1 + 1 : 1;
    seek $fh, 0, SEEK_SET;
    truncate $fh, 0;
    syswrite $fh, "$n\n";
    close $fh;
    return $n;
}


sub record_outcome {
    my ($c, $res) = @_;
    return if !defined $opt_record || !defined $res->{id};
    open my $fh, '>>', "$opt_record.responses" or return;
    flock $fh, LOCK_EX;
    seek $fh, 0, SEEK_END;
    syswrite $fh, $JSON->encode({
        id => $res->{id} + 0, path => $res->{path}, status => $res->{status} + 0,
        outcome => $res->{outcome}, events => ($res->{events} // 0) + 0,
        bytes => ($res->{bytes} // 0) + 0, time => time,
    }) . "\n";
    close $fh;
}


sub clear_records {
    return if !defined $opt_record;
    for my $file ($opt_record, "$opt_record.responses") {
        open my $fh, '>>', $file or next;
        flock $fh, LOCK_EX;
        truncate $fh, 0;
        close $fh;
    }
}


sub read_records {
    return [] if !defined $opt_record;
    open my $fh, '<', $opt_record or return [];
    flock $fh, LOCK_SH;
    my @out;
    while (my $line = <$fh>) {
        my $r = eval { $JSON_IN->decode($line) } or next;
        push @out, $r;
    }
    close $fh;
    return \@out;
}


# ---------------------------------------------------------------------------------------------
# writing

sub write_all {
    my ($c, $data) = @_;
    return 0 if $c->{closed};
    my $off = 0;
    my $len = length $data;
    while ($off < $len) {
        my $n = syswrite($c->{sock}, $data, $len - $off, $off);
        if (!defined $n) {
            next if $!{EINTR} || $!{EAGAIN};
            $c->{closed} = 1;
            return 0;
        }
        $off += $n;
    }
    return 1;
}


# Sleeps $ms milliseconds but notices a client that hangs up meanwhile (bytes it pipelines are
# kept). Returns false when the peer is gone.
sub pause_ms {
    my ($c, $ms) = @_;
    return !$c->{closed} if !$ms || $ms <= 0;
    my $deadline = time + $ms / 1000;
    while (1) {
        my $left = $deadline - time;
        last if $left <= 0;
        my @ready = $c->{sel}->can_read($left > 0.2 ? 0.2 : $left);
        if (@ready) {
            my $n = sysread($c->{sock}, $c->{buf}, 65536, length $c->{buf});
            if (defined $n && $n == 0 || !defined $n && !$!{EINTR} && !$!{EAGAIN}) {
                $c->{closed} = 1;
                return 0;
            }
            sleep 0.001 if length $c->{buf} > 16 * 1024 * 1024;    # pipelined flood: just wait
        }
        if (getppid() != $master_pid) {
            $c->{closed} = 1;
            return 0;
        }
    }
    return 1;
}


sub head_text {
    my ($c, $res, $extra) = @_;
    my $status = $res->{status};
    my $text = "HTTP/1.1 $status " . ($REASON{$status} // 'Status') . "\r\n";
    my @h = (
        'X-Request-Id'               => "mock-$res->{id}",
        'Openai-Processing-Ms'       => 1,
        'X-Ratelimit-Limit-Requests' => 100,
        @{ $res->{headers} || [] },
        @$extra,
    );
    while (my ($k, $v) = splice @h, 0, 2) {
        $text .= "$k: $v\r\n";
    }
    return "$text\r\n";
}


sub keep_alive {
    my ($req) = @_;
    my $conn = lc($req->{headers}{connection} // '');
    return 0 if $conn =~ /close/;
    return $req->{version} eq '1.1' || $conn =~ /keep-alive/;
}


# A complete response with Content-Length. Returns whether the connection may be reused.
sub send_response {
    my ($c, $req, $res, $body) = @_;

    my $keep = keep_alive($req) && !$res->{close};
    my $no_body = $req->{method} eq 'HEAD' || $res->{status} == 204 || $res->{status} == 304;
    my @extra = ('Content-Length' => length $body, 'Connection' => $keep ? 'keep-alive' : 'close');
    @extra = ('Connection' => $keep ? 'keep-alive' : 'close')
        if $res->{status} == 204 || $res->{status} == 304;

    if (defined $res->{cut}) {
        # Announce the whole body, send the first half, hang up.
        my $part = substr($body, 0, int(length($body) / 2));
        write_all($c, head_text($c, $res, \@extra) . $part);
        $res->{outcome} = 'cut';
        $res->{bytes} = length $part;
        record_outcome($c, $res);
        $c->{closed} = 1;
        return 0;
    }

    my $ok = write_all($c, head_text($c, $res, \@extra) . ($no_body ? '' : $body));
    $res->{outcome} = $ok ? 'complete' : 'client_closed';
    $res->{bytes} = $no_body ? 0 : length $body;
    record_outcome($c, $res);
    return $ok && $keep;
}


sub send_json {
    my ($c, $req, $res, $data) = @_;
    push @{ $res->{headers} }, 'Content-Type' => $res->{content_type} // 'application/json';
    return send_response($c, $req, $res, $JSON->encode($data));
}


# Streaming: a chunked (HTTP/1.1) or close-delimited (HTTP/1.0) body written event by event.
sub stream_start {
    my ($c, $req, $res, $ctype) = @_;
    $res->{chunked} = $req->{version} eq '1.1';
    $res->{keep} = $res->{chunked} && keep_alive($req);
    $res->{events} = 0;
    $res->{bytes} = 0;
    push @{ $res->{headers} }, 'Content-Type' => $res->{content_type} // $ctype,
                               'Cache-Control' => 'no-cache';
    my @extra = $res->{chunked} ? ('Transfer-Encoding' => 'chunked') : ();
    push @extra, 'Connection' => $res->{keep} ? 'keep-alive' : 'close';
    return write_all($c, head_text($c, $res, \@extra));
}


sub stream_piece {
    my ($c, $res, $data) = @_;
    return 1 if $data eq '';
    $res->{bytes} += length $data;
    return write_all($c, $res->{chunked} ? sprintf("%x\r\n%s\r\n", length $data, $data) : $data);
}


# Writes one event, honouring x-mock-cut, x-mock-chunk-delay-ms and x-mock-chunk-split.
# Returns false when the stream must stop (cut or client gone).
sub stream_event {
    my ($c, $res, $data) = @_;
    return 0 if $c->{closed};

    if (defined $res->{cut} && $res->{events} >= $res->{cut}) {
        $res->{outcome} = 'cut';
        $c->{closed} = 1;
        return 0;
    }
    if ($res->{events} > 0 && $res->{chunk_delay}) {
        pause_ms($c, $res->{chunk_delay}) or return fail_stream($res);
    }

    my $split = $res->{split};
    if ($split && $split > 0 && length $data > $split) {
        my $first = 1;
        for (my $off = 0; $off < length $data; $off += $split) {
            sleep $SPLIT_PAUSE if !$first;
            $first = 0;
            stream_piece($c, $res, substr($data, $off, $split)) or return fail_stream($res);
        }
    }
    else {
        stream_piece($c, $res, $data) or return fail_stream($res);
    }

    $res->{events}++;
    return 1;
}


sub fail_stream {
    my ($res) = @_;
    $res->{outcome} = 'client_closed';
    return 0;
}


# Ends the stream; returns whether the connection may be reused.
sub stream_end {
    my ($c, $res) = @_;
    if (!$c->{closed} && !defined $res->{cut}) {
        if ($res->{chunked}) {
            write_all($c, "0\r\n\r\n") or $res->{outcome} = 'client_closed';
        }
        $res->{outcome} //= 'complete';
    }
    elsif (defined $res->{cut} && !$res->{outcome}) {
        $res->{outcome} = 'cut';        # every event went out, but the stream never ends
    }
    $res->{outcome} //= 'client_closed';
    $c->{closed} = 1 if $res->{outcome} ne 'complete' || !$res->{keep};
    record_outcome($c, $res);
    return !$c->{closed};
}


sub sse {
    my ($data, $event) = @_;
    my $json = ref $data ? $JSON->encode($data) : $data;
    return (defined $event ? "event: $event\n" : '') . "data: $json\n\n";
}


# ---------------------------------------------------------------------------------------------
# dispatch

sub ctl {
    my ($req, $name) = @_;
    my $h = $req->{headers}{"x-mock-$name"};
    return $h if defined $h;
    (my $q = "mock_$name") =~ tr/-/_/;
    my $v = $req->{args}{$q};
    $v = $v->[-1] if ref $v;
    return $v;
}


sub ctl_int {
    my ($req, $name) = @_;
    my $v = ctl($req, $name);
    return undef if !defined $v || $v !~ /\A\s*(\d+)\s*\z/;
    return $1 + 0;
}


sub handle_request {
    my ($c, $req) = @_;
    my $path = $req->{path};

    if ($path =~ m{\A/__mock/}) {
        return handle_mock_api($c, $req);
    }

    record_request($c, $req);

    my $res = { id => $req->{id}, path => $path, status => 200, headers => [] };
    $res->{cut} = ctl_int($req, 'cut');
    $res->{split} = ctl_int($req, 'chunk-split');
    $res->{chunk_delay} = ctl_int($req, 'chunk-delay-ms');
    $res->{content_type} = ctl($req, 'content-type');
    if (defined(my $h = ctl($req, 'header'))) {
        my ($k, $v) = $h =~ /\A\s*([^:\s]+)\s*:\s*(.*?)\s*\z/;
        push @{ $res->{headers} }, $k => $v if defined $k;
    }

    if (!pause_ms($c, ctl_int($req, 'delay-ms'))) {
        @{$res}{qw(status outcome)} = (0, 'client_closed');
        record_outcome($c, $res);
        return 0;
    }

    if (defined(my $st = ctl_int($req, 'status'))) {
        return send_error($c, $req, $res, $st);
    }

    if ($path =~ m{/chat/completions\z} || $path =~ m{/completions\z}) {
        return ai_request($c, $req, $res, \&chat);
    }
    if ($path =~ m{/v1/messages\z}) {
        return ai_request($c, $req, $res, \&anthropic);
    }
    if ($path =~ m{(?:/v1|\A)/responses\z}) {
        return ai_request($c, $req, $res, \&responses);
    }
    if ($path =~ m{/embeddings\z}) {
        return ai_request($c, $req, $res, \&embeddings);
    }
    if ($path =~ m{\A/echo(?:/|\z)}) {
        return send_json($c, $req, $res, {
            method => $req->{method}, path => $path, query => $req->{query},
            args => $req->{args}, headers => $req->{headers}, body => $req->{body},
            json => $req->{json}, id => $req->{id} + 0,
        });
    }
    if ($path =~ m{\A/status/(\d{3})\z}) {
        return send_error($c, $req, $res, $1, { status => $1 + 0 });
    }
    if ($path =~ m{\A/delay/(\d+)\z}) {
        my $ms = $1;
        if (!pause_ms($c, $ms)) {
            @{$res}{qw(status outcome)} = (0, 'client_closed');
            record_outcome($c, $res);
            return 0;
        }
        return send_json($c, $req, $res, { delayed_ms => $ms + 0 });
    }
    if ($path eq '/sse') {
        return sse_endpoint($c, $req, $res);
    }
    if ($path =~ m{\A/bytes/(\d+)\z}) {
        return bytes_endpoint($c, $req, $res, $1);
    }
    if ($path eq '/static.json') {
        push @{ $res->{headers} }, 'Content-Type' => 'application/json';
        return send_response($c, $req, $res, static_json());
    }

    $res->{status} = 404;
    return send_json($c, $req, $res, { error => { message => 'not found', type => 'mock',
                                                  code => 404, path => $path } });
}


sub handle_mock_api {
    my ($c, $req) = @_;
    my $res = { status => 200, headers => [], id => 0 };
    if ($req->{path} eq '/__mock/requests') {
        return send_json($c, $req, $res, read_records());
    }
    if ($req->{path} eq '/__mock/clear') {
        clear_records();
        return send_json($c, $req, $res, { cleared => $TRUE });
    }
    $res->{status} = 404;
    return send_json($c, $req, $res, { error => { message => 'not found', code => 404 } });
}


sub send_error {
    my ($c, $req, $res, $status, $data) = @_;
    $res->{status} = $status;
    if ($status == 429) {
        push @{ $res->{headers} }, 'Retry-After' => 1, 'X-Ratelimit-Remaining-Requests' => 0;
    }
    $data //= { error => { message => 'mock error', type => 'mock', code => $status + 0 } };
    return send_json($c, $req, $res, $data);
}


# ---------------------------------------------------------------------------------------------
# AI endpoints

sub words {
    my ($s) = @_;
    return 0 if !defined $s || ref $s;
    my @w = split ' ', $s;
    return scalar @w;
}


# Counts words in a string, or in the text parts of an array of content parts / messages.
sub content_words {
    my ($v) = @_;
    return 0 if !defined $v;
    return words($v) if !ref $v;
    my $n = 0;
    if (ref $v eq 'ARRAY') {
        $n += content_words($_) for @$v;
    }
    elsif (ref $v eq 'HASH') {
        $n += words($v->{text}) if defined $v->{text} && !ref $v->{text};
        $n += content_words($v->{content}) if exists $v->{content};
    }
    return $n;
}


sub answer_words {
    my ($req) = @_;
    if (defined(my $n = ctl_int($req, 'events'))) {
        return map { "w$_" } 1 .. $n;
    }
    my $answer = ctl($req, 'answer') // $DEFAULT_ANSWER;
    return split ' ', $answer;
}


# The answer split into stream deltas: the first word bare, the others with a leading space,
# so the deltas concatenate to "w1 w2 ...".
sub deltas {
    my (@w) = @_;
    return map { $_ == 0 ? $w[$_] : " $w[$_]" } 0 .. $#w;
}


# Usage numbers: (prompt, completion, total) or () when x-mock-usage is 0.
sub usage_numbers {
    my ($req, $prompt, $completion) = @_;
    my $u = ctl($req, 'usage');
    if (defined $u) {
        return () if $u =~ /\A\s*(?:0|false|no|off)\s*\z/i;
        if ($u =~ /\A\s*(\d+)\s*,\s*(\d+)\s*(?:,\s*(\d+)\s*)?\z/) {
            return ($1 + 0, $2 + 0, defined $3 ? $3 + 0 : $1 + $2);
        }
    }
    $prompt = 1 if $prompt < 1;
    return ($prompt, $completion, $prompt + $completion);
}


sub is_true {
    my ($v) = @_;
    return 0 if !defined $v;
    return $v ? 1 : 0 if JSON::PP::is_bool($v);
    return !ref $v && ($v eq '1' || $v eq 'true');
}


sub ai_request {
    my ($c, $req, $res, $handler) = @_;

    if (length $req->{body} && !defined $req->{json}) {
        $res->{status} = 400;
        return send_json($c, $req, $res, { error => { message => 'mock: request body is not '
            . 'valid JSON', type => 'invalid_request_error', code => 'invalid_json' } });
    }
    my $body = ref $req->{json} eq 'HASH' ? $req->{json} : {};
    my $stream = is_true($body->{stream});

    if (defined ctl($req, 'invalid-json') && ctl($req, 'invalid-json') ne '0') {
        if ($stream) {
            stream_start($c, $req, $res, 'text/event-stream') or return 0;
            stream_event($c, $res, "data: {this is not json\n\n")
                && stream_event($c, $res, "data: [DONE]\n\n");
            return stream_end($c, $res);
        }
        push @{ $res->{headers} }, 'Content-Type' => $res->{content_type} // 'application/json';
        return send_response($c, $req, $res, 'this is {not json');
    }

    return $handler->($c, $req, $res, $body, $stream);
}


sub chat {
    my ($c, $req, $res, $body, $stream) = @_;

    my $model = defined $body->{model} && !ref $body->{model} ? $body->{model} : $DEFAULT_MODEL;
    my $prompt = 0;
    if (ref $body->{messages} eq 'ARRAY') {
        for my $m (grep { ref($_) eq q(HASH) } @{ $body->{messages} }) {
            $prompt += content_words($m->{content});
        }
    }
    elsif (defined $body->{prompt}) {
        $prompt = content_words($body->{prompt});
    }
    my @words = answer_words($req);
    my @usage = usage_numbers($req, $prompt, scalar @words);
    my $usage = @usage ? { prompt_tokens => $usage[0], completion_tokens => $usage[1],
                           total_tokens => $usage[2] } : undef;
    my $tool = ctl($req, 'tool-call');
    my $id = "chatcmpl-mock-$res->{id}";
    my $created = int time;

    if (!$stream) {
        my $message = { role => 'assistant', content => join(' ', @words) };
        if (defined $tool) {
            $message->{tool_calls} = [{ id => "call_mock_$res->{id}", type => 'function',
                function => { name => $tool, arguments => '{}' } }];
        }
        my $data = {
            id => $id, object => 'chat.completion', created => $created, model => $model,
            choices => [{ index => 0, message => $message, logprobs => undef,
                          finish_reason => defined $tool ? 'tool_calls' : 'stop' }],
            system_fingerprint => 'mock',
        };
        $data->{usage} = $usage if $usage;
        return send_json($c, $req, $res, $data);
    }

    my $include_usage = ref $body->{stream_options} eq 'HASH'
                     && is_true($body->{stream_options}{include_usage});
    my $chunk = sub {
        my ($delta, $finish) = @_;
        my $d = { id => $id, object => 'chat.completion.chunk', created => $created,
                  model => $model, system_fingerprint => 'mock',
                  choices => [{ index => 0, delta => $delta, logprobs => undef,
                                finish_reason => $finish }] };
        $d->{usage} = undef if $include_usage;
        return sse($d);
    };

    stream_start($c, $req, $res, 'text/event-stream') or return 0;
    my @d = deltas(@words);
    my $ok = 1;
    for my $i (0 .. $#d) {
        my $delta = { content => $d[$i] };
        $delta->{role} = 'assistant' if $i == 0;
        $ok = stream_event($c, $res, $chunk->($delta, undef)) or last;
    }
    if ($ok && defined $tool) {
        $ok = stream_event($c, $res, $chunk->({ tool_calls => [{ index => 0,
            id => "call_mock_$res->{id}", type => 'function',
            function => { name => $tool, arguments => '{}' } }] }, undef));
    }
    $ok &&= stream_event($c, $res, $chunk->({}, defined $tool ? 'tool_calls' : 'stop'));
    if ($ok && $include_usage && $usage) {
        $ok = stream_event($c, $res, sse({ id => $id, object => 'chat.completion.chunk',
            created => $created, model => $model, system_fingerprint => 'mock',
            choices => [], usage => $usage }));
    }
    $ok &&= stream_event($c, $res, "data: [DONE]\n\n");
    return stream_end($c, $res);
}


sub anthropic {
    my ($c, $req, $res, $body, $stream) = @_;

    my $model = defined $body->{model} && !ref $body->{model} ? $body->{model} : $DEFAULT_MODEL;
    my $prompt = content_words($body->{system});
    if (ref $body->{messages} eq 'ARRAY') {
        for my $m (grep { ref($_) eq q(HASH) } @{ $body->{messages} }) {
            $prompt += content_words($m->{content});
        }
    }
    my @words = answer_words($req);
    my @usage = usage_numbers($req, $prompt, scalar @words);
    my $id = "msg_mock_$res->{id}";

    if (!$stream) {
        my $data = {
            id => $id, type => 'message', role => 'assistant', model => $model,
            content => [{ type => 'text', text => join(' ', @words) }],
            stop_reason => 'end_turn', stop_sequence => undef,
        };
        $data->{usage} = { input_tokens => $usage[0], output_tokens => $usage[1] } if @usage;
        return send_json($c, $req, $res, $data);
    }

    my $message = { id => $id, type => 'message', role => 'assistant', model => $model,
                    content => [], stop_reason => undef, stop_sequence => undef };
    $message->{usage} = { input_tokens => $usage[0], output_tokens => 1 } if @usage;
    my $delta = { type => 'message_delta',
                  delta => { stop_reason => 'end_turn', stop_sequence => undef } };
    $delta->{usage} = { output_tokens => $usage[1] } if @usage;

    stream_start($c, $req, $res, 'text/event-stream') or return 0;
    my $ok = stream_event($c, $res, sse({ type => 'message_start', message => $message },
                                        'message_start'))
        && stream_event($c, $res, sse({ type => 'content_block_start', index => 0,
                                        content_block => { type => 'text', text => '' } },
                                      'content_block_start'));
    if ($ok) {
        for my $d (deltas(@words)) {
            $ok = stream_event($c, $res, sse({ type => 'content_block_delta', index => 0,
                delta => { type => 'text_delta', text => $d } }, 'content_block_delta')) or last;
        }
    }
    $ok &&= stream_event($c, $res, sse({ type => 'content_block_stop', index => 0 },
                                       'content_block_stop'));
    $ok &&= stream_event($c, $res, sse($delta, 'message_delta'));
    $ok &&= stream_event($c, $res, sse({ type => 'message_stop' }, 'message_stop'));
    return stream_end($c, $res);
}


sub responses {
    my ($c, $req, $res, $body, $stream) = @_;

    my $model = defined $body->{model} && !ref $body->{model} ? $body->{model} : $DEFAULT_MODEL;
    my $prompt = content_words($body->{input}) + content_words($body->{instructions});
    my @words = answer_words($req);
    my @usage = usage_numbers($req, $prompt, scalar @words);
    my $usage = @usage ? { input_tokens => $usage[0], output_tokens => $usage[1],
                           total_tokens => $usage[2],
                           input_tokens_details => { cached_tokens => 0 },
                           output_tokens_details => { reasoning_tokens => 0 } } : undef;
    my $rid = "resp_mock_$res->{id}";
    my $mid = "msg_mock_$res->{id}";
    my $text = join ' ', @words;
    my $created = int time;
    my $part = { type => 'output_text', text => $text, annotations => [] };
    my $item = { id => $mid, type => 'message', status => 'completed', role => 'assistant',
                 content => [$part] };
    my $response = sub {
        my ($status, $output, $u) = @_;
        return { id => $rid, object => 'response', created_at => $created, status => $status,
                 model => $model, output => $output, usage => $u };
    };

    if (!$stream) {
        my $data = $response->('completed', [$item], $usage);
        delete $data->{usage} if !$usage;
        return send_json($c, $req, $res, $data);
    }

    my $seq = 0;
    my $ev = sub {
        my ($type, %f) = @_;
        return sse({ type => $type, sequence_number => $seq++, %f }, $type);
    };
    my @events = (
        $ev->('response.created', response => $response->('in_progress', [], undef)),
        $ev->('response.in_progress', response => $response->('in_progress', [], undef)),
        $ev->('response.output_item.added', output_index => 0,
              item => { id => $mid, type => 'message', status => 'in_progress',
                        role => 'assistant', content => [] }),
        $ev->('response.content_part.added', item_id => $mid, output_index => 0,
              content_index => 0, part => { type => 'output_text', text => '',
                                            annotations => [] }),
    );
    for my $d (deltas(@words)) {
        push @events, $ev->('response.output_text.delta', item_id => $mid, output_index => 0,
                            content_index => 0, delta => $d);
    }
    my $done = $response->('completed', [$item], $usage);
    delete $done->{usage} if !$usage;
    push @events,
        $ev->('response.output_text.done', item_id => $mid, output_index => 0,
              content_index => 0, text => $text),
        $ev->('response.content_part.done', item_id => $mid, output_index => 0,
              content_index => 0, part => $part),
        $ev->('response.output_item.done', output_index => 0, item => $item),
        $ev->('response.completed', response => $done);

    stream_start($c, $req, $res, 'text/event-stream') or return 0;
    for my $e (@events) {
        stream_event($c, $res, $e) or last;
    }
    return stream_end($c, $res);
}


sub embedding_vector {
    my ($text) = @_;
    my @b = unpack 'n8', md5(defined $text ? (ref $text ? $JSON->encode($text) : $text) : '');
    return [ map { 0 + sprintf('%.6f', $_ / 32767.5 - 1) } @b ];
}


sub embeddings {
    my ($c, $req, $res, $body) = @_;

    my $model = defined $body->{model} && !ref $body->{model} ? $body->{model} : $DEFAULT_MODEL;
    my $input = $body->{input};
    my @inputs;
    my $prompt = 0;
    if (ref $input eq 'ARRAY' && @$input && !ref $input->[0] && $input->[0] =~ /\A\d+\z/
        && !grep { ref($_) || !/\A\d+\z/ } @$input)
    {
        @inputs = ($input);             # one input given as token ids
        $prompt = @$input;
    }
    elsif (ref $input eq 'ARRAY') {
        @inputs = @$input;
        $prompt += ref $_ eq 'ARRAY' ? scalar @$_ : words($_) for @inputs;
    }
    else {
        @inputs = ($input // '');
        $prompt = words($input);
    }
    my @usage = usage_numbers($req, $prompt, 0);

    my $i = 0;
    my $data = {
        object => 'list', model => $model,
        data => [ map { { object => 'embedding', index => $i++,
                          embedding => embedding_vector($_) } } @inputs ],
    };
    $data->{usage} = { prompt_tokens => $usage[0], total_tokens => $usage[0] } if @usage;
    return send_json($c, $req, $res, $data);
}


# ---------------------------------------------------------------------------------------------
# plain HTTP endpoints

sub sse_endpoint {
    my ($c, $req, $res) = @_;
    my $a = $req->{args};
    my $n = ($a->{n} // '') =~ /\A(\d+)\z/ ? $1 : 5;
    my $delay = ($a->{delay_ms} // '') =~ /\A(\d+)\z/ ? $1 : 0;
    my $size = ($a->{size} // '') =~ /\A(\d+)\z/ ? $1 : 0;
    $res->{chunk_delay} //= $delay;

    stream_start($c, $req, $res, 'text/event-stream') or return 0;
    for my $i (1 .. $n) {
        my $t = sprintf '%.6f', time;
        if ($res->{events} > 0 && $res->{chunk_delay}) {
            # take the timestamp after the pause, not before it
            pause_ms($c, $res->{chunk_delay}) or do { fail_stream($res); last };
            $t = sprintf '%.6f', time;
        }
        my $ev = qq(data: {"seq":$i,"t":$t,"pad":");
        my $pad = $size - length($ev) - 4;
        $ev .= 'x' x ($pad > 0 ? $pad : 0);
        $ev .= qq("}\n\n);
        local $res->{chunk_delay} = 0;
        stream_event($c, $res, $ev) or last;
    }
    return stream_end($c, $res);
}


sub bytes_endpoint {
    my ($c, $req, $res, $n) = @_;
    my $block = 'x' x 65536;
    my $chunked = is_true($req->{args}{chunked});
    push @{ $res->{headers} }, 'Content-Type' => 'application/octet-stream';

    if ($chunked) {
        stream_start($c, $req, $res, 'application/octet-stream') or return 0;
    }
    else {
        my $keep = keep_alive($req);
        my @extra = ('Content-Length' => $n, 'Connection' => $keep ? 'keep-alive' : 'close');
        write_all($c, head_text($c, $res, \@extra)) or return 0;
        $res->{keep} = $keep;
        $res->{bytes} = 0;
        $res->{events} = 0;
    }
    return stream_end($c, $res) if $req->{method} eq 'HEAD' && !$chunked;

    my $left = $n;
    while ($left > 0) {
        my $len = $left > 65536 ? 65536 : $left;
        my $piece = $len == 65536 ? $block : substr($block, 0, $len);
        my $ok = $chunked ? stream_piece($c, $res, $piece) : write_all($c, $piece);
        if (!$ok) {
            $res->{outcome} = 'client_closed';
            last;
        }
        $res->{bytes} += $len if !$chunked;
        $left -= $len;
    }
    if (!$chunked) {
        $res->{outcome} //= 'complete';
        $c->{closed} = 1 if $res->{outcome} ne 'complete' || !$res->{keep};
        record_outcome($c, $res);
        return !$c->{closed};
    }
    return stream_end($c, $res);
}


# A fixed JSON document of exactly 1024 bytes.
sub static_json {
    my $head = '{"name":"static","items":[1,2,3],"nested":{"ok":true},"pad":"';
    my $tail = "\"}\n";
    return $head . ('x' x (1024 - length($head) - length($tail))) . $tail;
}

__END__

=head1 NAME

llm.pl - mock LLM and HTTP upstream for Sluice's tests

=head1 SYNOPSIS

  perl t/mock/llm.pl --port 0 --record /tmp/requests.jsonl
  PORT 41234

=head1 OPTIONS

=over

=item --port N

Listen on 127.0.0.1:N; 0 picks a free port. "PORT <n>" is printed on stdout either way, once the
socket listens.

=item --record FILE

Append each request to FILE (JSON lines, flock'ed); how each response ended goes to
FILE.responses, and FILE.seq holds the id counter. Without --record a temporary file is used
(removed at exit); --no-record records nothing (ids are then "<pid>-<n>").

=back

=head1 RECORDED REQUEST

C<id> (1, 2, ... per record file), C<method>, C<path> (raw, not percent-decoded), C<query> (raw,
without "?"), C<args> (decoded query; repeated keys give arrays), C<version> ("1.1"),
C<headers> (lowercased names; repeated headers joined with ", "), C<body> (the de-chunked body;
bytes), C<json> (the decoded body or null), C<time> (epoch float when the request was read
fully), C<conn> (identifies the TCP connection: requests with the same C<conn> came over one
kept-alive connection), C<conn_seq> (1, 2, ... within the connection), C<remote_port>.

=head1 AI ENDPOINTS

Any method. A non-empty body that is not JSON gets a 400 OpenAI-style error. The model is
echoed from the request or "mock-model". The answer is "Hello from mock" (x-mock-answer,
x-mock-events N gives "w1 w2 ... wN"); prompt tokens are the whitespace-separated words of all
message contents (text parts of content arrays, Anthropic "system", Responses "input" and
"instructions"), at least 1; completion tokens are the answer's words.

Streams carry one content event per word; the deltas concatenate to the answer (words after the
first carry a leading space).

=over

=item .../chat/completions (and any path ending in /completions)

Non-stream: chat.completion. Stream: one chunk per word (the first delta also carries
role "assistant"), a chunk with finish_reason "stop", with stream_options.include_usage a
chunk with "choices":[] and usage (intermediate chunks then carry "usage":null), then
C<data: [DONE]>.

=item .../v1/messages

Anthropic. Stream: message_start (usage.input_tokens), content_block_start, one
content_block_delta per word, content_block_stop, message_delta (usage.output_tokens,
stop_reason end_turn), message_stop.

=item .../v1/responses

OpenAI Responses. Stream: response.created, response.in_progress, response.output_item.added,
response.content_part.added, one response.output_text.delta per word, response.output_text.done,
response.content_part.done, response.output_item.done, response.completed (with usage). No
[DONE].

=item .../embeddings

One 8-float embedding per input (deterministic: same text, same vector); usage.prompt_tokens
counts words (or token ids).

=back

=head1 CONTROLS

Header C<x-mock-NAME> or query parameter C<mock_NAME> (dashes become underscores); the header
wins. They apply to every path except /__mock/*.

=over

=item status: N

Respond N with C<{"error":{"message":"mock error","type":"mock","code":N}}>. 429 adds
C<Retry-After: 1> and C<X-Ratelimit-Remaining-Requests: 0>.

=item delay-ms: MS

Wait before the response head (a client that hangs up meanwhile is noticed).

=item chunk-delay-ms: MS

Pause between stream events.

=item events: N / answer: TEXT

The answer.

=item invalid-json: 1

200 with a body that is not JSON (Content-Type application/json); for a stream request, an SSE
stream whose one data event is not JSON, then [DONE].

=item cut: N

Stream: write N events, then close the connection without the terminating chunk. Non-stream:
announce the full Content-Length, send half the body, close.

=item chunk-split: N

Write each stream event as HTTP chunks of N bytes, 5 ms apart.

=item usage: 0 | P,C[,T]

0 omits usage everywhere; "P,C" or "P,C,T" forces the numbers (T defaults to P+C).

=item tool-call: NAME

Chat: the answer also carries a tool call to function NAME (finish_reason tool_calls).

=item content-type: TYPE / header: "Name: value"

Override the response Content-Type; add one response header.

=back

Every response carries C<X-Request-Id: mock-<id>>, C<Openai-Processing-Ms: 1> and
C<X-Ratelimit-Limit-Requests: 100>.

=head1 OTHER ENDPOINTS

C</echo>, C</echo/...>: 200 JSON {method, path, query, args, headers, body, json, id}.
C</status/NNN>: status NNN, body C<{"status":NNN}>. C</delay/MS>: 200 after MS ms.
C</sse?n=N&delay_ms=D&size=B>: N events C<data: {"seq":i,"t":epoch,"pad":"xx.."}>, each about
B bytes, D ms apart (defaults 5, 0, 0). C</bytes/N>: N bytes of "x" with Content-Length, written
64 KiB at a time (C<?chunked=1>: chunked). C</static.json>: a fixed 1024-byte JSON document.
C<GET /__mock/requests>: the recorded requests as a JSON array; C<POST /__mock/clear>: forget
them. Anything else: 404 JSON.

=cut
