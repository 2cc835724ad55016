import { describe, expect, it } from 'vitest';
import { ApiError } from '../../../src/devcluster/apiserver/api-status.js';
import { decodeProtobufObject } from '../../../src/devcluster/apiserver/protobuf-body.js';

// Bodies captured from kubectl v1.32's typed create commands (application/vnd.kubernetes.protobuf).
const kubectlCreateSecret =
  '6b3873000a0c0a027631120653656372657412250a120a02733112001a0022002a0032003800420012060a016b1201761a076d792f747970651a002200'; // kubectl create secret generic s1 --from-literal=k=v --type=my/type
const kubectlCreateService =
  '6b3873000a0d0a027631120753657276696365128c010a210a047376633112001a0022002a003200380042005a0b0a0361707012047376633112630a1b0a0738302d38303830120354435018502207080010903f1a0028000a1e0a0738312d6874747012035443501851220a080110001a04687474702800120b0a036170701204737663311a002209436c757374657249503a00420052005a00600068001a020a001a002200'; // kubectl create service clusterip svc1 --tcp=80:8080 --tcp=81:http
const kubectlCreateDeployment =
  '6b3873000a150a07617070732f7631120a4465706c6f796d656e7412b9010a1d0a02643112001a0022002a003200380042005a090a03617070120264311289010802120b0a090a03617070120264311a700a1b0a0012001a0022002a003200380042005a090a0361707012026431125112330a056e67696e78120a6e67696e783a312e32352a00320a0a001000185022002a0042006a007200800100880100900100a201001a00320042004a0052005800600068008201008a01009a0100c2010022020a00280038001a0c0800100018002000280038001a002200'; // kubectl create deployment d1 --image=nginx:1.25 --replicas=2 --port=80

describe('protobuf bodies from kubectl typed commands', () => {
  it('decodes a Secret with bytes data and a type', () => {
    expect(decodeProtobufObject(Buffer.from(kubectlCreateSecret, 'hex'))).toEqual({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 's1' },
      data: { k: Buffer.from('v').toString('base64') },
      type: 'my/type',
    });
  });

  it('decodes a Service with int and named target ports', () => {
    const svc = decodeProtobufObject(Buffer.from(kubectlCreateService, 'hex'));
    expect(svc).toMatchObject({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'svc1', labels: { app: 'svc1' } },
      spec: {
        type: 'ClusterIP',
        selector: { app: 'svc1' },
        ports: [
          { name: '80-8080', protocol: 'TCP', port: 80, targetPort: 8080 },
          { name: '81-http', protocol: 'TCP', port: 81, targetPort: 'http' },
        ],
      },
    });
  });

  it('decodes a Deployment with its pod template and replicas', () => {
    const d = decodeProtobufObject(Buffer.from(kubectlCreateDeployment, 'hex'));
    expect(d).toMatchObject({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      spec: {
        replicas: 2,
        selector: { matchLabels: { app: 'd1' } },
        template: {
          metadata: { labels: { app: 'd1' } },
          spec: { containers: [{ name: 'nginx', image: 'nginx:1.25', ports: [{ containerPort: 80 }] }] },
        },
      },
    });
  });

  it.each([
    ['no envelope', Buffer.from('{"kind":"Pod"}'), 400],
    ['truncated', Buffer.from(kubectlCreateService, 'hex').subarray(0, 60), 400],
    ['a kind it does not know', Buffer.from('6b387300' + '0a09' + '0a027631' + '1203506f64', 'hex'), 415],
  ])('refuses %s', (_name, body, code) => {
    try {
      decodeProtobufObject(body);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ApiError);
      expect((err as ApiError).code).toBe(code);
    }
  });
});
