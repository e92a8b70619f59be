# TLS termination on an "ip:port ssl" listener with certificates from the ssls resources,
# chosen by SNI (exact and wildcard names): TLS 1.2+ only, ALPN http/1.1, a certificate change
# or removal takes effect without a restart, an unknown name fails the handshake.
use strict; use warnings; use lib 't/lib'; use Test::More;
use File::Temp qw(tempdir);
use Sluice::Test qw(:all);

for my $tool (qw(openssl curl)) {
    plan skip_all => "$tool not installed" if system("command -v $tool >/dev/null 2>&1") != 0;
}

my $dir = tempdir(CLEANUP => 1);

# a self-signed certificate for $cn (and any extra DNS names) in $dir/$name.{crt,key}
sub make_cert {
    my ($name, $cn, @dns) = @_;
    my $san = join ',', map { "DNS:$_" } $cn, @dns;
    system("openssl req -x509 -newkey rsa:2048 -nodes -keyout $dir/$name.key "
           . "-out $dir/$name.crt -days 2 -subj /CN=$cn -addext subjectAltName=$san "
           . ">/dev/null 2>&1") == 0 or BAIL_OUT("openssl req for $cn failed");
    return map { local $/; open my $f, '<', "$dir/$name.$_" or die; scalar <$f> } qw(crt key);
}

my ($cert, $key) = make_cert('test', 'test.local');
my ($wcert, $wkey) = make_cert('wild', '*.wild.local');
my ($cert2, $key2) = make_cert('test2', 'test.local');

my $llm = start_mock_llm();
my ($port, $tls) = (free_port(), free_port());
my $sluice = start_sluice(port => $port,
                          config => { listen => ["127.0.0.1:$port", "127.0.0.1:$tls ssl"] });
my $A = '/apisix/admin';

is admin_put($sluice, "$A/routes/1", { uri => '/static.json', upstream => {
    type => 'roundrobin', nodes => { '127.0.0.1:' . $llm->port => 1 } } })->{status}, 201,
   'route';

sub curl {
    my ($name, $ca, @extra) = @_;
    my $cmd = "curl -sS --max-time 5 --resolve $name:$tls:127.0.0.1 --cacert $dir/$ca.crt @extra"
            . " -o /dev/null -w '%{http_code} %{http_version}' https://$name:$tls/static.json";
    return scalar `$cmd 2>&1`;
}

sub s_client {
    my ($name, @extra) = @_;
    my $cmd = "echo | timeout 5 openssl s_client -connect 127.0.0.1:$tls -servername $name @extra";
    return scalar `$cmd 2>&1`;
}

subtest 'no ssls resource: the handshake fails' => sub {
    unlike curl('test.local', 'test'), qr/^200/, 'curl fails';
    like s_client('test.local'), qr/alert|errno|error/i, 'openssl sees an alert';
};

subtest 'PUT /apisix/admin/ssls/1 and curl it' => sub {
    my $res = admin_put($sluice, "$A/ssls/1", { cert => $cert, key => $key,
                                                snis => ['test.local'] });
    is $res->{status}, 201, 'ssl created';
    ok wait_for(sub { curl('test.local', 'test') =~ /^200/ }, 3), 'curl verifies and gets 200';
    is $llm->last_request->{path}, '/static.json', 'proxied upstream';
    is $llm->last_request->{headers}{'x-forwarded-proto'}, 'https', 'X-Forwarded-Proto: https';
};

subtest 'openssl s_client: ALPN http/1.1, TLS 1.2 and 1.3, not 1.1' => sub {
    my $out = s_client('test.local', '-alpn', 'h2,http/1.1');
    like $out, qr/ALPN protocol: http\/1\.1/, 'ALPN http/1.1 chosen';
    like $out, qr/Protocol\s*:\s*TLSv1\.[23]|New, TLSv1\.[23]/, 'TLS 1.2 or newer';
    like $out, qr/subject=CN ?= ?test\.local/, 'the test.local certificate';
    $out = s_client('test.local', '-tls1_2');
    like $out, qr/Protocol\s*:\s*TLSv1\.2/, 'TLS 1.2 accepted';
    $out = s_client('test.local', '-tls1_1', '-cipher', 'DEFAULT@SECLEVEL=0');
    like $out, qr/Cipher is \(NONE\)|Cipher\s*:\s*0000/, 'TLS 1.1: no session';
    like $out, qr/alert protocol version|no protocols available|unsupported protocol/i,
         'TLS 1.1 refused';
    like curl('test.local', 'test', '--tlsv1.2', '--tls-max', '1.2'), qr/^200 1\.1/,
         'curl over TLS 1.2, HTTP/1.1';
};

subtest 'SNI picks the certificate; wildcards match one label' => sub {
    is admin_put($sluice, "$A/ssls/2", { cert => $wcert, key => $wkey,
                                         snis => ['*.wild.local'] })->{status}, 201, 'wildcard';
    ok wait_for(sub { curl('a.wild.local', 'wild') =~ /^200/ }, 3), 'a.wild.local';
    like s_client('b.wild.local'), qr/subject=CN ?= ?\*\.wild\.local/, 'wildcard certificate';
    unlike curl('x.y.wild.local', 'wild'), qr/^200/, 'not two labels deep';
    unlike curl('wild.local', 'wild'), qr/^200/, 'not the bare domain';
    like s_client('TEST.LOCAL'), qr/subject=CN ?= ?test\.local/, 'names are case-insensitive';
    unlike curl('other.local', 'test'), qr/^200/, 'an unknown name fails';
    like s_client('other.local'), qr/unrecognized name/i, 'with unrecognized_name';
    like $sluice->error_log, qr/no certificate for server name "other\.local"/, 'logged';
};

subtest 'a new certificate is used at once; DELETE removes it' => sub {
    is admin_put($sluice, "$A/ssls/1", { cert => $cert2, key => $key2,
                                         snis => ['test.local'] })->{status}, 200, 'replaced';
    ok wait_for(sub { curl('test.local', 'test2') =~ /^200/ }, 3), 'the new one verifies';
    unlike curl('test.local', 'test'), qr/^200/, 'the old one is gone';
    is admin_req($sluice, 'DELETE', "$A/ssls/1")->{status}, 200, 'DELETE';
    ok wait_for(sub { curl('test.local', 'test2') !~ /^200/ }, 3), 'handshake fails again';
};

subtest 'bad certificates are refused by the Admin API' => sub {
    my $res = admin_put($sluice, "$A/ssls/3", { cert => 'nope', key => $key, snis => ['x.local'] });
    is $res->{status}, 400, 'garbage cert: 400';
    ok defined $res->{json}{error_msg}, 'error_msg';
    $res = admin_put($sluice, "$A/ssls/3", { cert => $cert, snis => ['x.local'] });
    is $res->{status}, 400, 'no key: 400';
};

done_testing;
