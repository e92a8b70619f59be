# ai-proxy: a client that hangs up mid-stream makes the gateway cancel the provider's stream at
# once; the tokens streamed so far are logged (estimated and flagged, llm_stream_aborted =
# client_disconnect), the active-connection gauge goes back down, and the worker serves on.
# The same while waiting for the provider's first byte, and on a converted stream.
use strict; use warnings; use lib 't/lib'; use Test::More;
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use Sluice::Test qw(:all);

my $llm = start_mock_llm();
my $mock = 'http://127.0.0.1:' . $llm->port;
my $sluice = start_sluice(routes => [
    { id => 'chat', uri => '/v1/chat/completions',
      plugins => { 'ai-proxy' => $llm->ai_proxy_conf } },
    { id => 'anth', uri => '/anth/*',
      plugins => { 'ai-proxy' => { provider => 'anthropic',
                                   auth => { header => { 'x-api-key' => 'k' } },
                                   override => { endpoint => $mock } } } },
]);
my ($worker) = $sluice->worker_pids;

sub open_stream {
    my ($path, $headers, $body) = @_;
    $body //= '{"stream":true,"messages":[{"role":"user","content":"count for me please"}]}';
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $sluice->port,
                                  Proto => 'tcp', Timeout => 3) or die "connect: $@";
    my $h = join '', map { "$_: $headers->{$_}\r\n" } sort keys %$headers;
    syswrite $s, "POST $path HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n$h"
               . "Content-Length: " . length($body) . "\r\n\r\n$body";
    return $s;
}

sub read_until {
    my ($s, $re, $max) = @_;
    my ($buf, $deadline) = ('', time + $max);
    my $sel = IO::Select->new($s);
    while ($buf !~ $re && time < $deadline) {
        last if !$sel->can_read($deadline - time);
        sysread($s, $buf, 65536, length $buf) or last;
    }
    return $buf;
}

sub outcome {
    my ($path) = @_;
    return wait_for(sub {
        my ($r) = grep { $_->{path} eq $path } @{ $llm->responses };
        $r;
    }, 3);
}

sub active_gauges {
    my $m = http_req($sluice->metrics_url('/apisix/prometheus/metrics'), 'GET', '');
    return [ ($m->{body} // '') =~ /^apisix_llm_active_connections\{[^}]*\} (-?\d+)/mg ];
}

my $n = 0;
sub line { $n++; my $log = $sluice->wait_access_log($n); return $log->[$n - 1] || {} }

subtest 'hang up mid-stream' => sub {
    $llm->clear;
    my $s = open_stream('/v1/chat/completions',
                        { 'x-mock-events' => 100, 'x-mock-chunk-delay-ms' => 50 });
    my $got = read_until($s, qr/" w5"/, 5);
    like $got, qr/" w5"/, 'five deltas received';
    is_deeply [ grep { $_ } @{ active_gauges() } ], [1], 'one active LLM connection meanwhile';
    my $t0 = time;
    close $s;
    my $o = outcome('/v1/chat/completions');
    is $o && $o->{outcome}, 'client_closed', 'the provider\'s stream was cancelled';
    cmp_ok $o ? $o->{events} : 999, '<', 20, 'long before its 100 events';
    cmp_ok time - $t0, '<', 1, 'at once';

    my $l = line();
    is $l->{llm_stream_aborted}, 'client_disconnect', 'llm_stream_aborted=client_disconnect';
    ok $l->{client_closed}, 'client_closed';
    ok $l->{llm_usage_estimated}, 'usage estimated';
    my $c = $l->{llm_completion_tokens};
    cmp_ok $c, '>=', 5, "completion tokens so far ($c) counted";
    cmp_ok $c, '<=', $o ? $o->{events} : 20, 'not more than were sent';
    cmp_ok $l->{llm_prompt_tokens}, '>=', 4, 'prompt estimated from the request';
    is $l->{llm_total_tokens}, $l->{llm_prompt_tokens} + $c, 'total';
    ok $sluice->wait_error_log(qr/AI usage estimated \(client_disconnect\)/),
        'error log says what happened';
    ok wait_for(sub { !grep { $_ } @{ active_gauges() } }, 3), 'active gauge back to 0';
};

subtest 'hang up before the provider answers' => sub {
    $llm->clear;
    my $s = open_stream('/v1/chat/completions', { 'x-mock-delay-ms' => 3000 });
    sleep 0.3;
    close $s;
    my $o = outcome('/v1/chat/completions');
    is $o && $o->{outcome}, 'client_closed', 'the provider request was abandoned';
    is $o && $o->{status}, 0, 'before its response head';
    my $l = line();
    ok $l->{client_closed}, 'client_closed logged';
    is $l->{llm_total_tokens}, 0, 'nothing to count';
    ok wait_for(sub { !grep { $_ } @{ active_gauges() } }, 3), 'active gauge back to 0';
};

subtest 'hang up during a converted stream (OpenAI client, anthropic provider)' => sub {
    $llm->clear;
    my $s = open_stream('/anth/v1/chat/completions',
                        { 'x-mock-events' => 100, 'x-mock-chunk-delay-ms' => 50 });
    my $got = read_until($s, qr/" w3"/, 5);
    like $got, qr/" w3"/, 'converted deltas received';
    close $s;
    my $o = outcome('/v1/messages');
    is $o && $o->{outcome}, 'client_closed', 'cancelled';
    my $l = line();
    is $l->{llm_stream_aborted}, 'client_disconnect', 'client_disconnect';
    cmp_ok $l->{llm_completion_tokens}, '>=', 3, 'tokens so far';
    cmp_ok $l->{llm_prompt_tokens}, '>=', 4, 'prompt from message_start';
};

subtest 'the worker serves on' => sub {
    my $r = post_json($sluice, '/v1/chat/completions',
                      { messages => [{ role => 'user', content => 'hi' }] });
    is $r->{status}, 200, 'a new request works';
    is join(',', $sluice->worker_pids), $worker, 'same worker';
};

done_testing;
