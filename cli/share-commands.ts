/** `pir image share …`: download links for people without an account (create is the default). */
import { Command } from 'commander';
import { positiveInt } from './args.js';
import { contextOf } from './context.js';
import { printList, printRecord } from './output.js';

export function shareCommand(): Command {
  const share = new Command('share').description('share an image by link with someone without an account: create (default), list, revoke');
  share.addCommand(new Command('create')
    .description('create an expiring, download-only link for one image; the url is shown only now')
    .argument('<id>', 'image id')
    .option('--expires-in <seconds>', 'seconds until the link stops working (at most 30 days)', positiveInt, 86_400)
    .action(async (id: string, o: { expiresIn: number }, cmd: Command) => {
      const { client, format } = await contextOf(cmd);
      const link = await client.createShareLink(id, o.expiresIn);
      printRecord({ ...link }, format);
    }), { isDefault: true });
  share.addCommand(new Command('list')
    .description("an image's share links with their use counts (their urls are never shown again)")
    .argument('<id>', 'image id')
    .action(async (id: string, _o, cmd: Command) => {
      const { client, format } = await contextOf(cmd);
      printList((await client.listShareLinks(id)).map((l) => ({ ...l, created_by: `${l.created_by.project_id}/${l.created_by.user_id}` })), ['id', 'expires_at', 'uses', 'created_by'], format);
    }));
  share.addCommand(new Command('revoke')
    .description('revoke a share link at once')
    .argument('<id>', 'image id')
    .argument('<link-id>', 'the link id (from share list)')
    .action(async (id: string, linkId: string, _o, cmd: Command) => {
      const { client } = await contextOf(cmd);
      await client.revokeShareLink(id, linkId);
      process.stderr.write(`revoked share link ${linkId} of image ${id}\n`);
    }));
  return share;
}
