# ai-proxy limits: max_response_bytes (a non-streaming answer over it is a 502 with
# "max_response_bytes exceeded", by Content-Length or while reading; a stream is cut once
# over it), max_stream_duration_ms (504 before the first byte; a stream is cut when the time
# is up), timeout per read rather than per stream (a slow but steady stream lasting longer than
# `timeout` completes), keepalive (provider connections reused, or not).
use strict; use warnings; use lib 't/lib'; use Test::More;
use Time::HiRes qw(time);
use Sluice::Test qw(:all);

my $llm = start_mock_llm();
my $TRUE = JSON::PP::true;
my $sluice = start_sluice(routes => [
    { id => 'bytes', uri => '/bytes',
      plugins => { 'ai-proxy' => $llm->ai_proxy_conf(max_response_bytes => 600) } },
    { id => 'dur', uri => '/dur',
      plugins => { 'ai-proxy' => $llm->ai_proxy_conf(max_stream_duration_ms => 400) } },
    { id => 'steady', uri => '/steady',
      plugins => { 'ai-proxy' => $llm->ai_proxy_conf(timeout => 500) } },
    { id => 'ka', uri => '/ka', plugins => { 'ai-proxy' => $llm->ai_proxy_conf } },
    { id => 'noka', uri => '/noka',
      plugins => { 'ai-proxy' => $llm->ai_proxy_conf(keepalive => JSON::PP::false) } },
]);

my $chat = { messages => [{ role => 'user', content => 'one two three four' }] };
my $stream = { %$chat, stream => $TRUE };
my $n = 0;
sub ask { $n++; my ($p, $b, %h) = @_; post_json($sluice, $p, $b, headers => \%h) }
sub line { my $log = $sluice->wait_access_log($n); return $log->[$n - 1] || {} }

subtest 'max_response_bytes: small answer passes' => sub {
    my $r = ask('/bytes', $chat);
    is $r->{status}, 200, 'status';
    is $r->{json}{choices}[0]{message}{content}, 'Hello from mock', 'whole answer';
    is line()->{llm_total_tokens}, 7, 'usage';
};

subtest 'max_response_bytes: Content-Length over it' => sub {
    my $r = ask('/bytes', $chat, 'x-mock-events' => 200);
    is $r->{status}, 502, 'status 502';
    is $r->{body}, 'max_response_bytes exceeded', 'body';
    my $l = line();
    is $l->{llm_stream_aborted}, 'max_response_bytes', 'logged';
    ok $sluice->wait_error_log(qr/Content-Length \d+ exceeds max_response_bytes 600/),
        'error log says why';
};

subtest 'max_response_bytes: chunked answer found over it while reading' => sub {
    my $r = ask('/bytes', $chat, 'x-mock-events' => 200, 'x-mock-chunk-split' => 200);
    is $r->{status}, 502, 'status 502';
    is $r->{body}, 'max_response_bytes exceeded', 'body';
    is line()->{llm_stream_aborted}, 'max_response_bytes', 'logged';
};

subtest 'max_response_bytes: a stream is cut' => sub {
    $llm->clear;
    my $r = ask('/bytes', $stream, 'x-mock-events' => 50, 'x-mock-chunk-delay-ms' => 10);
    is $r->{status}, 200, 'status (already sent)';
    my $words = () = $r->{body} =~ /"content":"/g;
    cmp_ok $words, '>=', 1, 'the first events arrived';
    cmp_ok $words, '<', 10, 'cut early';
    unlike $r->{body}, qr/\[DONE\]/, 'no [DONE]';
    my $l = line();
    is $l->{llm_stream_aborted}, 'max_response_bytes', 'logged';
    ok $l->{llm_usage_estimated}, 'usage estimated';
    my ($o) = @{ $llm->responses };
    is $o && $o->{outcome}, 'client_closed', 'the provider stream was stopped';
};

subtest 'max_stream_duration_ms: nothing within the time' => sub {
    my $t0 = time;
    my $r = ask('/dur', $stream, 'x-mock-delay-ms' => 2000);
    cmp_ok time - $t0, '<', 1.5, 'not waiting for the provider';
    is $r->{status}, 504, 'status 504';
    like $r->{body}, qr/timed out|exceeded/, 'says why';
};

subtest 'max_stream_duration_ms: a long stream is cut' => sub {
    my $t0 = time;
    my $r = ask('/dur', $stream, 'x-mock-events' => 50, 'x-mock-chunk-delay-ms' => 50);
    my $took = time - $t0;
    cmp_ok $took, '<', 1.2, sprintf('cut after ~0.4 s (%.2f)', $took);
    is $r->{status}, 200, 'status';
    like $r->{body}, qr/"w1"/, 'the start arrived';
    unlike $r->{body}, qr/\[DONE\]/, 'no [DONE]';
    my $l = line();
    is $l->{llm_stream_aborted}, 'max_stream_duration_ms', 'logged as max_stream_duration_ms';
    ok $l->{llm_usage_estimated}, 'estimated';
    cmp_ok $l->{llm_completion_tokens}, '>=', 3, 'tokens so far';
};

subtest 'max_stream_duration_ms does not touch non-streaming requests' => sub {
    my $r = ask('/dur', $chat, 'x-mock-delay-ms' => 700);
    is $r->{status}, 200, 'status';
    line();
};

subtest 'timeout is per read, not per stream' => sub {
    my $t0 = time;
    my $r = ask('/steady', $stream, 'x-mock-events' => 6, 'x-mock-chunk-delay-ms' => 300);
    cmp_ok time - $t0, '>', 1.5, 'the stream lasted longer than timeout';
    is $r->{status}, 200, 'status';
    like $r->{body}, qr/data: \[DONE\]\n\n\z/, 'complete';
    my $l = line();
    ok !$l->{llm_stream_aborted}, 'not aborted';
    is $l->{llm_completion_tokens}, 6, 'exact usage';
};

subtest 'keepalive: provider connections reused' => sub {
    $llm->clear;
    ask('/ka', $chat) for 1 .. 3;
    my @conn = map { $_->{conn} } @{ $llm->requests };
    is scalar @conn, 3, 'three requests';
    is scalar(keys %{{ map { $_ => 1 } @conn }}), 1, 'over one connection';
    line() for 1 .. 3;
};

subtest 'keepalive false: a connection per request' => sub {
    $llm->clear;
    ask('/noka', $chat) for 1 .. 3;
    my @conn = map { $_->{conn} } @{ $llm->requests };
    is scalar(keys %{{ map { $_ => 1 } @conn }}), 3, 'three connections';
    line() for 1 .. 3;
};

done_testing;
